//! Kubernetes `NetworkPolicy` (`networking.k8s.io/v1`): the model, read from YAML with the
//! API server's validation; its compiled form; and the check of one connection.
//!
//! Semantics (the API reference of `NetworkPolicySpec` and its parts):
//! 1. `spec.podSelector` selects pods in the policy's namespace; `{}` selects all of them.
//! 2. `policyTypes` defaults to `[Ingress]`, plus `Egress` when `spec.egress` has rules.
//! 3. A pod is isolated for a direction iff at least one policy selecting it has that type;
//!    an isolated pod then accepts (ingress) or opens (egress) only the connections the union
//!    of those policies' rules allows. Policies only add: there is no deny and no order.
//! 4. A rule allows a connection when one of its peers matches (no peers: any peer) and one
//!    of its ports matches (no ports: every port).
//! 5. A connection is allowed iff the source's egress allows it and the destination's
//!    ingress allows it.
//!
//! Endpoints come from the request: a workload named in the inventory, a workload described
//! inline (namespace and labels), or else the inventory workload owning the address
//! ([`Inventory::owner_of`]). An address no live workload owns is outside the cluster: never
//! isolated, matched only by `ipBlock` peers. An address two live workloads claim is an
//! error (fail closed), never a guess. Named ports are resolved on the destination pod, in
//! both directions.
//!
//! Node traffic (the Kubernetes documentation, "NetworkPolicy and hostNetwork pods" and
//! "Isolation"): a connection from or to a node's address, or a `hostNetwork` pod, is the
//! node's. `ipBlock` peers apply to it; pod and namespace selectors do not match it, and
//! policies do not isolate a `hostNetwork` pod ([`HostNetworkPods::Node`], "the most common
//! implementation"; [`HostNetworkPods::Pod`] treats a `hostNetwork` pod named in the request
//! as its pod instead). A pod isolated for ingress still accepts connections from its own
//! node ([`NodeTraffic::allow_own_node`], on by default, as the documentation states).
//!
//! ```
//! use palisade_engine::{compile, load, Options, Request, SourceFile, Step};
//!
//! let text = r#"
//! apiVersion: palisade.dev/v1alpha1
//! kind: Inventory
//! metadata: {name: shop}
//! spec:
//!   workloads:
//!   - {name: frontend, namespace: shop, labels: {app: frontend}, ips: [10.0.1.5]}
//!   - {name: db, namespace: shop, labels: {app: db}, ips: [10.0.2.7]}
//! ---
//! apiVersion: networking.k8s.io/v1
//! kind: NetworkPolicy
//! metadata: {name: db-from-frontend, namespace: shop}
//! spec:
//!   podSelector: {matchLabels: {app: db}}
//!   ingress:
//!   - from: [{podSelector: {matchLabels: {app: frontend}}}]
//!     ports: [{port: 5432}]
//! "#;
//! let set = load(&[SourceFile::new("shop.yaml", text)]).unwrap();
//! let engine = compile(&set, &Options::default()).unwrap();
//! let conn = |src: &str, port: u16| -> Request {
//!     serde_json::from_value(serde_json::json!({
//!         "protocol": "tcp",
//!         "source": {"ip": src},
//!         "destination": {"ip": "10.0.2.7", "port": port},
//!     }))
//!     .unwrap()
//! };
//! let allowed = engine.decide(&conn("10.0.1.5", 5432));
//! assert!(allowed.allowed());
//! let rule = allowed.network.unwrap().ingress_rule.unwrap();
//! assert_eq!(rule.id, "netpol[shop/db-from-frontend]-ingress[0]");
//! let denied = engine.decide(&conn("203.0.113.9", 5432));
//! assert_eq!(denied.step, Step::NetworkIngressDenied);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::authz::Origin;
use crate::decision::{NetworkOutcome, RuleRef, Step, Verdict};
use crate::diag::{Diagnostic, Errors};
use crate::inventory::{AddressOwner, Inventory, NamedPort, parse_transport};
use crate::request::{Endpoint, Request, Transport};
use crate::yaml::{At, DResult, Fields};

/// How NetworkPolicy treats node traffic, where Kubernetes leaves the choice to the network
/// plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeTraffic {
    /// What a `hostNetwork` pod's connections are.
    pub host_network_pods: HostNetworkPods,
    /// A pod isolated for ingress still accepts connections from its own node (the
    /// documentation's rule; kubelet probes depend on it).
    pub allow_own_node: bool,
}

impl Default for NodeTraffic {
    fn default() -> Self {
        NodeTraffic {
            host_network_pods: HostNetworkPods::Node,
            allow_own_node: true,
        }
    }
}

/// What a `hostNetwork` pod's connections are to NetworkPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HostNetworkPods {
    /// Node traffic: selectors ignore the pod, policies do not isolate it, `ipBlock`s see the
    /// node's address (the documentation's "most common implementation").
    Node,
    /// The pod, when the request names it (its labels match selectors, its policies isolate
    /// it); a bare node address is still node traffic, as no plugin can tell whose it is.
    Pod,
}

/// A NetworkPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `spec.podSelector`: the pods of `namespace` the policy applies to.
    pub pod_selector: LabelSelector,
    /// `spec.policyTypes`, defaults applied.
    pub policy_types: PolicyTypes,
    /// `spec.ingress`, ORed; consulted only when `policy_types.ingress`.
    pub ingress: Vec<Rule>,
    /// `spec.egress`, ORed; consulted only when `policy_types.egress`.
    pub egress: Vec<Rule>,
    /// Where it came from.
    pub origin: Origin,
}

/// The directions a policy isolates its pods for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTypes {
    /// `Ingress`: the selected pods accept only what `ingress` rules allow.
    pub ingress: bool,
    /// `Egress`: the selected pods open only what `egress` rules allow.
    pub egress: bool,
}

/// A label selector: every `matchLabels` entry AND every `matchExpressions` requirement must
/// hold. `{}` selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    /// `key: value` pairs that must all be present.
    pub match_labels: Vec<(String, String)>,
    /// Requirements, ANDed.
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label is tested.
    pub operator: Operator,
    /// The values (`In`, `NotIn`: at least one; `Exists`, `DoesNotExist`: none), ORed.
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The label is present with one of the values.
    In,
    /// The label is absent, or present with none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// An `ingress[i]` or `egress[i]` rule: allows a connection when any peer matches (no peers:
/// any peer, in or outside the cluster) AND any port matches (no ports: every port).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `from` (ingress) or `to` (egress), ORed.
    pub peers: Vec<Peer>,
    /// `ports`, ORed. The destination's ports, in both directions.
    pub ports: Vec<PortMatch>,
}

/// One `from`/`to` entry: the other side of the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector`, ANDed: pods matching `pods` (absent: every
    /// pod) in the namespaces matching `namespaces` (absent: the policy's own namespace).
    /// Never matches an endpoint that is not a known pod.
    Pods {
        /// `podSelector`.
        pods: Option<LabelSelector>,
        /// `namespaceSelector`.
        namespaces: Option<LabelSelector>,
    },
    /// `ipBlock`: the other side's address is in `cidr` and in none of `except`.
    IpBlock {
        /// `ipBlock.cidr`.
        cidr: IpNet,
        /// `ipBlock.except`, each strictly inside `cidr`.
        except: Vec<IpNet>,
    },
}

/// One `ports` entry: the protocol AND (when given) the port or port range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMatch {
    /// `protocol` (`TCP` when absent).
    pub protocol: Transport,
    /// `port`; absent means every port of the protocol.
    pub port: Option<PortRef>,
    /// `endPort`: with a numeric `port`, the range `port..=end_port`.
    pub end_port: Option<u16>,
}

/// A port as a policy names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A named container port, resolved on the destination pod.
    Name(String),
}

/// Which way a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The field holding a rule's peers.
    fn peers_field(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

// ----------------------------------------------------------------------------------------
// Reading
// ----------------------------------------------------------------------------------------

/// Reads a NetworkPolicy's `spec` (the caller has taken `apiVersion`, `kind` and `metadata`).
pub fn parse(
    mut top: Fields<'_>,
    name: String,
    namespace: String,
    origin: Origin,
) -> DResult<NetworkPolicy> {
    let spec = top.take("spec");
    top.ignore(&["status"]);
    top.finish(&["apiVersion", "kind", "metadata", "spec", "status"])?;
    let mut policy = NetworkPolicy {
        name,
        namespace,
        pod_selector: LabelSelector::default(),
        policy_types: PolicyTypes {
            ingress: true,
            egress: false,
        },
        ingress: Vec::new(),
        egress: Vec::new(),
        origin,
    };
    // No spec: Kubernetes' zero value, an empty selector isolating every pod for ingress.
    let Some(spec) = spec else {
        return Ok(policy);
    };
    let at = spec.at();
    let mut f = at.fields()?;
    let pod_selector = f.take("podSelector");
    let policy_types = f.take("policyTypes");
    let ingress = f.take("ingress");
    let egress = f.take("egress");
    f.finish(&["podSelector", "policyTypes", "ingress", "egress"])?;

    if let Some(s) = &pod_selector {
        policy.pod_selector = parse_selector(s.at())?;
    }
    if let Some(rules) = &ingress {
        policy.ingress = parse_rules(rules.at(), Direction::Ingress)?;
    }
    if let Some(rules) = &egress {
        policy.egress = parse_rules(rules.at(), Direction::Egress)?;
    }
    let mut types = PolicyTypes::default();
    if let Some(pt) = &policy_types {
        let list = pt.at().strings()?;
        if list.len() > 2 {
            return Err(pt
                .at()
                .error("`policyTypes` may not list more than two types"));
        }
        for s in &list {
            match s.value.as_str() {
                "Ingress" => types.ingress = true,
                "Egress" => types.egress = true,
                other => {
                    return Err(s
                        .error(format!("unknown policy type `{other}`"))
                        .with_help("expected `Ingress` or `Egress`"));
                }
            }
        }
    }
    if types == PolicyTypes::default() {
        // Kubernetes' default: Ingress always, Egress when there are egress rules.
        types = PolicyTypes {
            ingress: true,
            egress: !policy.egress.is_empty(),
        };
    }
    policy.policy_types = types;
    Ok(policy)
}

fn parse_rules(at: At<'_>, dir: Direction) -> DResult<Vec<Rule>> {
    let mut rules = Vec::new();
    for (item, path) in at.items()? {
        rules.push(parse_rule(item.with_path(&path), dir)?);
    }
    Ok(rules)
}

fn parse_rule(at: At<'_>, dir: Direction) -> DResult<Rule> {
    let peers_key = dir.peers_field();
    let mut f = at.fields()?;
    let peers = f.take(peers_key);
    let ports = f.take("ports");
    f.finish(&[peers_key, "ports"])?;
    let mut rule = Rule::default();
    if let Some(peers) = &peers {
        for (item, path) in peers.at().items()? {
            rule.peers.push(parse_peer(item.with_path(&path))?);
        }
    }
    if let Some(ports) = &ports {
        for (item, path) in ports.at().items()? {
            rule.ports.push(parse_port(item.with_path(&path))?);
        }
    }
    Ok(rule)
}

fn parse_peer(at: At<'_>) -> DResult<Peer> {
    let mut f = at.fields()?;
    let pods = f.take("podSelector");
    let namespaces = f.take("namespaceSelector");
    let ip_block = f.take("ipBlock");
    f.finish(&["podSelector", "namespaceSelector", "ipBlock"])?;
    if let Some(ip) = &ip_block {
        if pods.is_some() || namespaces.is_some() {
            return Err(ip
                .at()
                .error("`ipBlock` cannot be combined with `podSelector` or `namespaceSelector`")
                .with_help("write two peers instead: the entries of `from`/`to` are ORed"));
        }
        return parse_ip_block(ip.at());
    }
    if pods.is_none() && namespaces.is_none() {
        return Err(at
            .error("a peer needs `podSelector`, `namespaceSelector` or `ipBlock`")
            .with_help("to allow any peer, leave out `from`/`to` (or write `namespaceSelector: {}` for every pod in the cluster)"));
    }
    Ok(Peer::Pods {
        pods: pods.map(|p| parse_selector(p.at())).transpose()?,
        namespaces: namespaces.map(|n| parse_selector(n.at())).transpose()?,
    })
}

fn parse_ip_block(at: At<'_>) -> DResult<Peer> {
    let mut f = at.fields()?;
    let cidr_f = f.require("cidr")?;
    let except_f = f.take("except");
    f.finish(&["cidr", "except"])?;
    let cidr_at = cidr_f.at();
    let text = cidr_at.string()?;
    let cidr = text
        .parse::<IpNet>()
        .map_err(|_| {
            cidr_at.error(format!("invalid CIDR `{text}`")).with_help(
                "write an address and a prefix length, e.g. `10.0.0.0/16` or `2001:db8::/32`",
            )
        })?
        .trunc();
    let mut except = Vec::new();
    if let Some(e) = &except_f {
        for s in e.at().strings()? {
            let net = s
                .value
                .parse::<IpNet>()
                .map_err(|_| {
                    s.error(format!("invalid CIDR `{}`", s.value))
                        .with_help("write an address and a prefix length, e.g. `10.0.1.0/24`")
                })?
                .trunc();
            if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                return Err(s
                    .error(format!(
                        "`except` entry `{}` is not inside `cidr` `{text}`",
                        s.value
                    ))
                    .with_help("each `except` entry must be a strict subset of `cidr`"));
            }
            except.push(net);
        }
    }
    Ok(Peer::IpBlock { cidr, except })
}

fn parse_port(at: At<'_>) -> DResult<PortMatch> {
    let mut f = at.fields()?;
    let protocol_f = f.take("protocol");
    let port_f = f.take("port");
    let end_f = f.take("endPort");
    f.finish(&["protocol", "port", "endPort"])?;
    let protocol = match &protocol_f {
        Some(p) => parse_transport(p.at())?,
        None => Transport::Tcp,
    };
    let port = match &port_f {
        None => None,
        Some(p) => {
            let p = p.at();
            let text = p.string()?;
            if text.parse::<i64>().is_ok() {
                Some(PortRef::Number(to_port(p.integer(1, 65535)?)))
            } else if valid_port_name(&text) {
                Some(PortRef::Name(text))
            } else {
                return Err(p
                    .error(format!("invalid port `{text}`"))
                    .with_help("a port is a number (1-65535) or a container port's name: at most 15 lower-case letters, digits and `-`, with at least one letter"));
            }
        }
    };
    let end_port = match &end_f {
        None => None,
        Some(e) => {
            let e = e.at();
            let end = to_port(e.integer(1, 65535)?);
            match &port {
                Some(PortRef::Number(start)) if end >= *start => Some(end),
                Some(PortRef::Number(start)) => {
                    return Err(e.error(format!("`endPort` {end} is less than `port` {start}")));
                }
                Some(PortRef::Name(name)) => {
                    return Err(e
                        .error(format!(
                            "`endPort` needs a numeric `port`, not the named port `{name}`"
                        ))
                        .with_help("a port range is written with port numbers"));
                }
                None => {
                    return Err(e
                        .error("`endPort` needs a numeric `port`")
                        .with_help("add `port`: the first port of the range"));
                }
            }
        }
    };
    Ok(PortMatch {
        protocol,
        port,
        end_port,
    })
}

/// Range-checked by the caller (1..=65535).
fn to_port(v: i64) -> u16 {
    u16::try_from(v).unwrap_or(0)
}

/// An IANA service name, as Kubernetes validates container port names.
fn valid_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn parse_selector(at: At<'_>) -> DResult<LabelSelector> {
    let mut f = at.fields()?;
    let labels = f.take("matchLabels");
    let expressions = f.take("matchExpressions");
    f.finish(&["matchLabels", "matchExpressions"])?;
    let mut selector = LabelSelector::default();
    if let Some(l) = &labels {
        selector.match_labels = l.at().string_map()?;
    }
    if let Some(e) = &expressions {
        for (item, path) in e.at().items()? {
            selector
                .match_expressions
                .push(parse_requirement(item.with_path(&path))?);
        }
    }
    Ok(selector)
}

/// Reads one `matchExpressions` entry (shared by every selector that takes them).
pub(crate) fn parse_requirement(at: At<'_>) -> DResult<Requirement> {
    let mut f = at.fields()?;
    let key_f = f.require("key")?;
    let op_f = f.require("operator")?;
    let values_f = f.take("values");
    f.finish(&["key", "operator", "values"])?;
    let key = key_f.at().string()?;
    if key.is_empty() {
        return Err(key_f.at().error("label key must not be empty"));
    }
    let operator = match op_f.at().string()?.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(op_f
                .at()
                .error(format!("unknown operator `{other}`"))
                .with_help("expected one of `In`, `NotIn`, `Exists`, `DoesNotExist`"));
        }
    };
    let values = match &values_f {
        Some(v) => v.at().strings()?,
        None => Vec::new(),
    };
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            let d = match &values_f {
                Some(v) => v
                    .at()
                    .error(format!("operator `{operator:?}` needs at least one value")),
                None => at.error(format!(
                    "operator `{operator:?}` needs at least one value in `values`"
                )),
            };
            return Err(d);
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            let d = match &values_f {
                Some(v) => v.at(),
                None => at,
            }
            .error(format!("operator `{operator:?}` takes no values"))
            .with_help("remove `values`");
            return Err(d);
        }
        _ => {}
    }
    Ok(Requirement {
        key,
        operator,
        values: values.into_iter().map(|s| s.value).collect(),
    })
}

// ----------------------------------------------------------------------------------------
// Matching
// ----------------------------------------------------------------------------------------

/// Something with labels: a pod, or a namespace.
/// Anything that answers label look-ups (pod labels, namespace labels).
pub(crate) trait Labels {
    /// The value of a label, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A namespace's labels, with `kubernetes.io/metadata.name` set as Kubernetes sets it.
struct NamespaceLabels<'a> {
    name: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> NamespaceLabels<'a> {
    fn of(inventory: &'a Inventory, name: &'a str) -> Self {
        NamespaceLabels {
            name,
            labels: inventory
                .namespaces
                .iter()
                .find(|n| n.name == name)
                .map(|n| &n.labels),
        }
    }
}

impl Labels for NamespaceLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if key == "kubernetes.io/metadata.name" {
            return Some(self.name);
        }
        self.labels.and_then(|l| l.label(key))
    }
}

impl LabelSelector {
    /// Whether the labels satisfy every entry and requirement.
    pub(crate) fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.label(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        let listed = value.is_some_and(|v| self.values.iter().any(|x| x == v));
        match self.operator {
            Operator::In => listed,
            Operator::NotIn => !listed,
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Compiling
// ----------------------------------------------------------------------------------------

/// A NetworkPolicy as decisions use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `spec.podSelector`.
    pub pod_selector: LabelSelector,
    /// The directions it isolates.
    pub policy_types: PolicyTypes,
    /// Ingress rules, ORed.
    pub ingress: Vec<Rule>,
    /// Egress rules, ORed.
    pub egress: Vec<Rule>,
}

/// The policies that select one pod, by direction (indices into
/// [`CompiledNetwork::policies`]). A non-empty list means the pod is isolated that way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selected {
    /// Policies selecting the pod with type `Ingress`.
    pub ingress: Vec<usize>,
    /// Policies selecting the pod with type `Egress`.
    pub egress: Vec<usize>,
}

/// NetworkPolicies compiled for decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledNetwork {
    /// Every policy, in input order.
    pub policies: Vec<CompiledPolicy>,
    /// For each inventory workload (same order as `Inventory::workloads`), the policies that
    /// select it.
    pub selected: Vec<Selected>,
}

impl CompiledNetwork {
    /// Whether there are no NetworkPolicies (then they never restrict anything).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policies that select a pod of `namespace` with `labels`.
    fn select(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Selected {
        let mut out = Selected::default();
        for (i, p) in self.policies.iter().enumerate() {
            if p.namespace == namespace && p.pod_selector.matches(labels) {
                if p.policy_types.ingress {
                    out.ingress.push(i);
                }
                if p.policy_types.egress {
                    out.egress.push(i);
                }
            }
        }
        out
    }
}

/// Compiles NetworkPolicies against the inventory: which policies select each workload.
pub fn compile(
    policies: &[NetworkPolicy],
    inventory: &Inventory,
) -> Result<CompiledNetwork, Errors> {
    let mut errors = Errors::default();
    let mut seen: BTreeMap<(&str, &str), &Origin> = BTreeMap::new();
    for p in policies {
        if let Some(first) = seen.insert((&p.namespace, &p.name), &p.origin) {
            let mut d = Diagnostic::new(format!(
                "NetworkPolicy `{}/{}` is defined twice ({}:{} and {}:{})",
                p.namespace, p.name, first.file, first.line, p.origin.file, p.origin.line
            ))
            .with_help("a policy's namespace and name must be unique; remove or rename one");
            d.document = Some(format!("NetworkPolicy {}/{}", p.namespace, p.name));
            errors.diagnostics.push(d);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut net = CompiledNetwork {
        policies: policies
            .iter()
            .map(|p| CompiledPolicy {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                pod_selector: p.pod_selector.clone(),
                policy_types: p.policy_types,
                ingress: p.ingress.clone(),
                egress: p.egress.clone(),
            })
            .collect(),
        selected: Vec::new(),
    };
    net.selected = inventory
        .workloads
        .iter()
        .map(|w| net.select(&w.namespace, &w.labels))
        .collect();
    Ok(net)
}

// ----------------------------------------------------------------------------------------
// Deciding
// ----------------------------------------------------------------------------------------

/// One side of the connection as NetworkPolicy sees it.
struct Side<'a> {
    /// The pod, when the endpoint is one (from the inventory or described inline).
    pod: Option<Pod<'a>>,
    /// The addresses `ipBlock` peers test (any of them may match).
    ips: Ips<'a>,
    /// The node, when this side is node traffic (a node's address or a `hostNetwork` pod);
    /// empty when the node's name is not known.
    node: Option<&'a str>,
}

/// A side's addresses, borrowed: the request's one, or an inventory workload's.
enum Ips<'a> {
    One(IpAddr),
    All(&'a [IpAddr]),
}

impl Ips<'_> {
    fn as_slice(&self) -> &[IpAddr] {
        match self {
            Ips::One(ip) => std::slice::from_ref(ip),
            Ips::All(ips) => ips,
        }
    }
}

struct Pod<'a> {
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
    /// Named container ports (none for a pod described inline).
    ports: &'a [NamedPort],
    /// The policies that select it (precomputed for inventory workloads).
    selected: Cow<'a, Selected>,
    /// The node it runs on (empty when not known).
    node: &'a str,
}

/// Finds an endpoint: the named inventory workload, the inline workload, the inventory
/// workload owning its address — or, for an address no workload owns, an external endpoint.
fn resolve<'a>(
    net: &'a CompiledNetwork,
    inventory: &'a Inventory,
    ep: &'a Endpoint,
    side: &str,
    nodes: NodeTraffic,
) -> Result<Side<'a>, String> {
    // `named`: the request names the workload (so a `hostNetwork` pod can be told apart from
    // its node in `HostNetworkPods::Pod`).
    let known = |i: usize, named: bool| -> Result<Side<'a>, String> {
        let w = inventory
            .workloads
            .get(i)
            .ok_or_else(|| "inventory workload missing".to_string())?;
        let ips = match ep.ip {
            Some(ip) => Ips::One(ip),
            None => Ips::All(&w.ips),
        };
        if w.host_network && !(named && nodes.host_network_pods == HostNetworkPods::Pod) {
            return Ok(Side {
                pod: None,
                ips,
                node: Some(&w.node_name),
            });
        }
        let selected = net.selected.get(i).map(Cow::Borrowed).ok_or_else(|| {
            "the compiled NetworkPolicies do not match the inventory (recompile the bundle)"
                .to_string()
        })?;
        Ok(Side {
            pod: Some(Pod {
                namespace: &w.namespace,
                labels: &w.labels,
                ports: &w.ports,
                selected,
                node: &w.node_name,
            }),
            ips,
            node: None,
        })
    };
    match &ep.workload {
        Some(w) => match &w.name {
            Some(name) => {
                let i = inventory
                    .workloads
                    .iter()
                    .position(|x| x.namespace == w.namespace && &x.name == name)
                    .ok_or_else(|| {
                        format!(
                            "{side} workload `{}/{name}` is not in the inventory",
                            w.namespace
                        )
                    })?;
                known(i, true)
            }
            None => Ok(Side {
                pod: Some(Pod {
                    namespace: &w.namespace,
                    labels: &w.labels,
                    ports: &[],
                    selected: Cow::Owned(net.select(&w.namespace, &w.labels)),
                    node: "",
                }),
                ips: ep.ip.map_or(Ips::All(&[]), Ips::One),
                node: None,
            }),
        },
        None => match ep.ip {
            Some(ip) => match inventory.owner_of(ip) {
                AddressOwner::Workload(i) => known(i, false),
                AddressOwner::Node(node) => Ok(Side {
                    pod: None,
                    ips: Ips::One(ip),
                    node: Some(node),
                }),
                AddressOwner::Ambiguous(a, b) => Err(ambiguous(inventory, side, ip, a, b)),
                AddressOwner::External => Ok(Side {
                    pod: None,
                    ips: Ips::One(ip),
                    node: None,
                }),
            },
            None => match spiffe_identity(ep.principal.as_deref()) {
                // By identity: the one inventory workload running as that service account.
                Some((ns, sa)) => {
                    let mut matches = inventory
                        .workloads
                        .iter()
                        .enumerate()
                        .filter(|(_, w)| w.namespace == ns && w.service_account == sa);
                    match (matches.next(), matches.next()) {
                        (Some((i, _)), None) => known(i, false),
                        (Some(_), Some(_)) => Err(format!(
                            "the {side} identity `{ns}/{sa}` is shared by several inventory workloads; give its workload or address"
                        )),
                        (None, _) => Err(format!(
                            "no inventory workload runs as the {side} identity `{ns}/{sa}`"
                        )),
                    }
                }
                None => Err(format!(
                    "NetworkPolicy needs the {side} workload, address or SPIFFE identity, and the request gives none"
                )),
            },
        },
    }
}

/// The error for an address two live workloads claim.
fn ambiguous(inventory: &Inventory, side: &str, ip: IpAddr, a: usize, b: usize) -> String {
    let name = |i: usize| {
        inventory
            .workloads
            .get(i)
            .map_or_else(String::new, |w| format!("`{}/{}`", w.namespace, w.name))
    };
    format!(
        "the {side} address `{ip}` is held by both {} and {}: which one sent it cannot be known; mark the stale one finished (`phase`) or remove it from the inventory",
        name(a),
        name(b)
    )
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>` → `(ns, sa)`.
fn spiffe_identity(principal: Option<&str>) -> Option<(&str, &str)> {
    let rest = principal?.strip_prefix("spiffe://")?;
    let mut parts = rest.split('/');
    let (_td, ns_kw, ns, sa_kw, sa) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (ns_kw == "ns" && sa_kw == "sa" && parts.next().is_none()).then_some((ns, sa))
}

/// What the connection looks like from a rule: who is on the other side, and the
/// destination's port, transport and named ports.
struct Conn<'a, 'b> {
    peer: &'b Side<'a>,
    port: Option<u16>,
    transport: Transport,
    dst_ports: &'a [NamedPort],
}

impl Peer {
    fn matches(&self, policy_namespace: &str, other: &Side<'_>, inventory: &Inventory) -> bool {
        match self {
            Peer::IpBlock { cidr, except } => other
                .ips
                .as_slice()
                .iter()
                .any(|ip| cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))),
            Peer::Pods { pods, namespaces } => {
                let Some(pod) = &other.pod else {
                    return false;
                };
                let in_namespace = match namespaces {
                    None => pod.namespace == policy_namespace,
                    Some(sel) => sel.matches(&NamespaceLabels::of(inventory, pod.namespace)),
                };
                in_namespace && pods.as_ref().is_none_or(|sel| sel.matches(pod.labels))
            }
        }
    }
}

impl PortMatch {
    fn matches(&self, conn: &Conn<'_, '_>) -> bool {
        if self.protocol != conn.transport {
            return false;
        }
        let Some(want) = &self.port else {
            return true;
        };
        let Some(port) = conn.port else {
            return false;
        };
        match want {
            PortRef::Number(start) => match self.end_port {
                Some(end) => (*start..=end).contains(&port),
                None => port == *start,
            },
            PortRef::Name(name) => conn
                .dst_ports
                .iter()
                .any(|np| &np.name == name && np.protocol == conn.transport && np.port == port),
        }
    }
}

impl Rule {
    fn matches(&self, policy_namespace: &str, conn: &Conn<'_, '_>, inventory: &Inventory) -> bool {
        (self.peers.is_empty()
            || self
                .peers
                .iter()
                .any(|p| p.matches(policy_namespace, conn.peer, inventory)))
            && (self.ports.is_empty() || self.ports.iter().any(|p| p.matches(conn)))
    }
}

/// The first rule, over the given policies in input order, that allows the connection.
fn allowing_rule(
    net: &CompiledNetwork,
    inventory: &Inventory,
    policies: &[usize],
    dir: Direction,
    conn: &Conn<'_, '_>,
) -> Option<RuleRef> {
    for &i in policies {
        let Some(p) = net.policies.get(i) else {
            continue;
        };
        let rules = match dir {
            Direction::Ingress => &p.ingress,
            Direction::Egress => &p.egress,
        };
        if let Some(r) = rules
            .iter()
            .position(|r| r.matches(&p.namespace, conn, inventory))
        {
            return Some(RuleRef {
                kind: "NetworkPolicy".into(),
                namespace: p.namespace.clone(),
                policy: p.name.clone(),
                rule: r,
                id: format!("netpol[{}/{}]-{}[{r}]", p.namespace, p.name, dir.as_str()),
            });
        }
    }
    None
}

/// Evaluates a connection: allowed only if the source's egress and the destination's
/// ingress both allow it. An endpoint that is not a known pod is never isolated. Fails
/// (closed) when an endpoint cannot be found.
pub fn evaluate(
    net: &CompiledNetwork,
    inventory: &Inventory,
    req: &Request,
    nodes: NodeTraffic,
) -> Result<NetworkOutcome, String> {
    let src = resolve(net, inventory, &req.source, "source", nodes)?;
    let dst = resolve(net, inventory, &req.destination, "destination", nodes)?;
    let port = req.destination.port;
    let dst_ports = dst.pod.as_ref().map_or(&[][..], |p| p.ports);
    // `None`: not isolated that way; `Some(None)`: isolated and no rule allows.
    let egress = src.pod.as_ref().and_then(|p| {
        (!p.selected.egress.is_empty()).then(|| {
            let conn = Conn {
                peer: &dst,
                port,
                transport: req.transport,
                dst_ports,
            };
            allowing_rule(net, inventory, &p.selected.egress, Direction::Egress, &conn)
        })
    });
    // The pod's own node may always connect to it (kubelet's probes among others).
    let from_own_node = nodes.allow_own_node
        && dst.pod.as_ref().is_some_and(|p| {
            !p.selected.ingress.is_empty() && !p.node.is_empty() && src.node == Some(p.node)
        });
    let ingress = dst.pod.as_ref().filter(|_| !from_own_node).and_then(|p| {
        (!p.selected.ingress.is_empty()).then(|| {
            let conn = Conn {
                peer: &src,
                port,
                transport: req.transport,
                dst_ports,
            };
            allowing_rule(
                net,
                inventory,
                &p.selected.ingress,
                Direction::Ingress,
                &conn,
            )
        })
    });
    // Egress is checked first: a connection the source may not open never reaches the
    // destination.
    let (verdict, step) = match (&egress, &ingress) {
        (Some(None), _) => (Verdict::Deny, Step::NetworkEgressDenied),
        (_, Some(None)) => (Verdict::Deny, Step::NetworkIngressDenied),
        (None, None) if from_own_node => (Verdict::Allow, Step::NetworkFromOwnNode),
        (None, None) => (Verdict::Allow, Step::NetworkNotIsolated),
        _ => (Verdict::Allow, Step::NetworkAllowed),
    };
    Ok(NetworkOutcome {
        verdict,
        step,
        ingress_rule: ingress.flatten(),
        egress_rule: egress.flatten(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use crate::{Engine, Options, SourceFile, compile as compile_engine, load};

    /// Namespaces x, y, z (as in Kubernetes' own NetworkPolicy e2e model), pods a, b, c.
    const INVENTORY: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: cluster}
spec:
  namespaces:
  - {name: x, labels: {team: red}}
  - {name: y, labels: {team: blue}}
  - {name: z}
  workloads:
  - name: a
    namespace: x
    labels: {pod: a, tier: web}
    ips: [10.0.0.1]
    ports: [{name: serve-80, port: 80}, {name: dns, port: 53, protocol: UDP}]
  - name: b
    namespace: x
    labels: {pod: b}
    ips: [10.0.0.2]
    ports: [{name: serve-80, port: 80}, {name: serve-81, port: 81}]
  - {name: c, namespace: x, labels: {pod: c, tier: db}, ips: [10.0.0.3]}
  - {name: a, namespace: y, labels: {pod: a}, ips: [10.0.1.1]}
  - {name: b, namespace: y, labels: {pod: b}, ips: [10.0.1.2]}
  - {name: a, namespace: z, labels: {pod: a}, ips: [10.0.2.1]}
"#;

    /// A NetworkPolicy document; `id` is `namespace/name`, `spec` flow-style YAML.
    fn policy_doc(id: &str, spec: &str) -> String {
        let (ns, name) = id.split_once('/').unwrap();
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        )
    }

    fn engine(policies: &[(&str, &str)]) -> Engine {
        let text = policies
            .iter()
            .map(|(id, spec)| policy_doc(id, spec))
            .collect::<Vec<_>>()
            .join("---\n");
        let set = load(&[
            SourceFile::new("inventory.yaml", INVENTORY),
            SourceFile::new("policies.yaml", text),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        compile_engine(&set, &Options::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ns/name` is an inventory workload, `ns{k=v}` an inline one, anything else an address.
    fn endpoint(s: &str) -> serde_json::Value {
        if let Some((ns, labels)) = s.split_once('{') {
            let labels: serde_json::Map<_, _> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), serde_json::Value::from(v))
                })
                .collect();
            serde_json::json!({"workload": {"namespace": ns, "labels": labels}})
        } else if let Some((ns, name)) = s.split_once('/') {
            serde_json::json!({"workload": {"namespace": ns, "name": name}})
        } else if s.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({"ip": s})
        }
    }

    /// A connection `src -> dst:port/transport`, e.g. `x/b -> x/a:80/TCP`.
    fn conn(c: &str) -> Request {
        let (src, rest) = c.split_once(" -> ").unwrap();
        let (dst, port_t) = rest.rsplit_once(':').unwrap();
        let (port, transport) = port_t.split_once('/').unwrap_or((port_t, "TCP"));
        let mut d = endpoint(dst);
        d["port"] = port.parse::<u16>().unwrap().into();
        serde_json::from_value(serde_json::json!({
            "protocol": "tcp",
            "transport": transport,
            "source": endpoint(src),
            "destination": d,
        }))
        .unwrap()
    }

    /// `allow network-allowed in=<id> out=<id>`, `-` for no rule.
    fn summary(e: &Engine, c: &str) -> String {
        let d = e.decide(&conn(c));
        let step = serde_json::to_value(d.step).unwrap();
        let id = |r: Option<RuleRef>| r.map_or_else(|| "-".to_string(), |r| r.id);
        let (i, o) = d
            .network
            .map_or((None, None), |n| (n.ingress_rule, n.egress_rule));
        let mut s = format!("{} {}", d.verdict, step.as_str().unwrap());
        if d.step == Step::Error {
            s.push_str(&format!(" {}", d.errors.join("; ")));
        } else {
            s.push_str(&format!(" in={} out={}", id(i), id(o)));
        }
        s
    }

    const DENY_ALL: &str = "{podSelector: {}}";
    const FROM_B: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}";
    const FROM_C: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]}";
    const FROM_BLUE: &str =
        "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]}";
    const FROM_Z: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]}";
    const FROM_ALL_NS: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}";
    const AND_PEER: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {pod: b}}}]}]}";
    const OR_PEERS: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}, {podSelector: {matchLabels: {pod: b}}}]}]}";
    const IN_B: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, z]}]}}]}]}";
    const NOT_IN_DB: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}}]}]}";
    const TIER_EXISTS: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]}]}";
    const TIER_ABSENT: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]}";
    const ISOLATE_WEB: &str =
        "{podSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}}";
    const IP_BLOCK: &str = "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]}]}";
    const POD_CIDR: &str = "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24}}]}]}";
    const EGRESS_TO_NET: &str = "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}]}]}";
    const NAMED_80: &str = "{podSelector: {}, ingress: [{ports: [{port: serve-80}]}]}";
    const NAMED_DNS_UDP: &str =
        "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: dns}]}]}";
    const EGRESS_NAMED_81: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{ports: [{port: serve-81}]}]}";
    const RANGE: &str = "{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 8100}]}]}";
    const UDP_53: &str = "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 53}]}]}";
    const TCP_53: &str = "{podSelector: {}, ingress: [{ports: [{port: 53}]}]}";
    const ALL_SCTP: &str = "{podSelector: {}, ingress: [{ports: [{protocol: SCTP}]}]}";
    const EGRESS_ONLY: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}";
    const EGRESS_RULES: &str = "{podSelector: {matchLabels: {pod: a}}, egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]}";
    const EGRESS_EMPTY: &str = "{podSelector: {matchLabels: {pod: a}}, egress: []}";
    const EGRESS_TYPE_IGNORES_INGRESS: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}";
    const BOTH_TYPES_EMPTY: &str =
        "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress, Egress]}";
    const A_TO_B_80: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}";
    const B_FROM_C: &str = "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]}";
    const B_FROM_A: &str = "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]}";
    const ALLOW_ALL: &str = "{podSelector: {}, ingress: [{}]}";
    const EMPTY_FROM_PORTS: &str = "{podSelector: {}, ingress: [{from: [], ports: []}]}";
    const INGRESS_TYPE_IGNORES_EGRESS: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress], egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]}";
    const EGRESS_DENY_ALL: &str = "{podSelector: {}, policyTypes: [Egress]}";

    /// A row: (case, policies as `(namespace/name, spec)`, connection, expected summary).
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );

    #[test]
    fn connections_are_decided_as_kubernetes_does() {
        let rows: &[Case] = &[
            (
                "default deny: a pod selected for ingress refuses its namespace",
                &[("x/deny", DENY_ALL)],
                "x/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "default deny: and other namespaces",
                &[("x/deny", DENY_ALL)],
                "y/a -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "default deny: pods of other namespaces are not isolated",
                &[("x/deny", DENY_ALL)],
                "x/a -> y/a:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "default deny: ingress only, egress stays open",
                &[("x/deny", DENY_ALL)],
                "x/a -> 203.0.113.9:443",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "allow all: ingress [{}] allows any peer on any port",
                &[("x/deny", DENY_ALL), ("x/all", ALLOW_ALL)],
                "203.0.113.9 -> x/a:9999",
                "allow network-allowed in=netpol[x/all]-ingress[0] out=-",
            ),
            (
                "empty from and ports: any peer on any port",
                &[("x/p", EMPTY_FROM_PORTS)],
                "203.0.113.9 -> x/a:9999/UDP",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "policyTypes [Ingress]: egress rules are ignored",
                &[("x/p", INGRESS_TYPE_IGNORES_EGRESS)],
                "x/a -> x/c:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "pod selector peer: the selected pod",
                &[("x/p", FROM_B)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "pod selector peer: another pod",
                &[("x/p", FROM_B)],
                "x/c -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "pod selector peer: same labels in another namespace",
                &[("x/p", FROM_B)],
                "y/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "pod selector peer: an inline source workload",
                &[("x/p", FROM_B)],
                "x{pod=b} -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "pod selector peer: the policy's selector leaves other pods open",
                &[("x/p", FROM_B)],
                "x/c -> x/b:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "pod selector peer: an inline destination is selected too",
                &[("x/p", FROM_B)],
                "x/c -> x{pod=a}:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "namespace selector peer: a matching namespace",
                &[("x/p", FROM_BLUE)],
                "y/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "namespace selector peer: the policy's own namespace does not match",
                &[("x/p", FROM_BLUE)],
                "x/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "namespace selector peer: kubernetes.io/metadata.name",
                &[("x/p", FROM_Z)],
                "z/a -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "namespace selector peer: by name, another namespace",
                &[("x/p", FROM_Z)],
                "y/a -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "namespace selector peer: {} matches every pod",
                &[("x/p", FROM_ALL_NS)],
                "z/a -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "namespace selector peer: {} does not match outside the cluster",
                &[("x/p", FROM_ALL_NS)],
                "203.0.113.9 -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "both in one peer: pod and namespace match",
                &[("x/p", AND_PEER)],
                "y/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "both in one peer: namespace matches, pod does not",
                &[("x/p", AND_PEER)],
                "y/a -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "both in one peer: pod matches, namespace does not",
                &[("x/p", AND_PEER)],
                "x/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "two peers: the namespace alone",
                &[("x/p", OR_PEERS)],
                "y/a -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "two peers: the pod alone",
                &[("x/p", OR_PEERS)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "two peers: neither",
                &[("x/p", OR_PEERS)],
                "x/c -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "In: a listed value",
                &[("x/p", IN_B)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "In: a value not listed",
                &[("x/p", IN_B)],
                "x/c -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "NotIn: the label absent",
                &[("x/p", NOT_IN_DB)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "NotIn: a listed value",
                &[("x/p", NOT_IN_DB)],
                "x/c -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "Exists: the label present",
                &[("x/p", TIER_EXISTS)],
                "x/c -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "Exists: the label absent",
                &[("x/p", TIER_EXISTS)],
                "x/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "DoesNotExist: the label absent",
                &[("x/p", TIER_ABSENT)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "DoesNotExist: the label present",
                &[("x/p", TIER_ABSENT)],
                "x/c -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "expressions in spec.podSelector: the selected pod",
                &[("x/p", ISOLATE_WEB)],
                "x/c -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "expressions in spec.podSelector: another pod",
                &[("x/p", ISOLATE_WEB)],
                "x/c -> x/b:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "ipBlock: inside cidr",
                &[("x/p", IP_BLOCK)],
                "203.0.113.9 -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "ipBlock: inside except",
                &[("x/p", IP_BLOCK)],
                "203.0.113.200 -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "ipBlock: outside cidr",
                &[("x/p", IP_BLOCK)],
                "198.51.100.1 -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "ipBlock: a pod's inventory address",
                &[("x/p", POD_CIDR)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "ipBlock: a pod outside the block",
                &[("x/p", POD_CIDR)],
                "y/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "ipBlock: egress to an external address",
                &[("x/p", EGRESS_TO_NET)],
                "x/a -> 203.0.113.9:443",
                "allow network-allowed in=- out=netpol[x/p]-egress[0]",
            ),
            (
                "ipBlock: egress to an address outside",
                &[("x/p", EGRESS_TO_NET)],
                "x/a -> 198.51.100.1:443",
                "deny network-egress-denied in=- out=-",
            ),
            (
                "named port: the destination's port of that name",
                &[("x/p", NAMED_80)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "named port: another port",
                &[("x/p", NAMED_80)],
                "x/b -> x/a:81",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "named port: a destination without that name",
                &[("x/p", NAMED_80)],
                "x/a -> x/c:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "named port: UDP name and transport",
                &[("x/p", NAMED_DNS_UDP)],
                "x/b -> x/a:53/UDP",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "named port: UDP name, TCP connection",
                &[("x/p", NAMED_DNS_UDP)],
                "x/b -> x/a:53/TCP",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "named port: egress resolves on the destination pod",
                &[("x/p", EGRESS_NAMED_81)],
                "x/a -> x/b:81",
                "allow network-allowed in=- out=netpol[x/p]-egress[0]",
            ),
            (
                "named port: egress to a pod without that name",
                &[("x/p", EGRESS_NAMED_81)],
                "x/a -> y/b:81",
                "deny network-egress-denied in=- out=-",
            ),
            (
                "named port: egress to an external address",
                &[("x/p", EGRESS_NAMED_81)],
                "x/a -> 203.0.113.9:81",
                "deny network-egress-denied in=- out=-",
            ),
            (
                "endPort: first port",
                &[("x/p", RANGE)],
                "x/b -> x/a:8000",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "endPort: last port",
                &[("x/p", RANGE)],
                "x/b -> x/a:8100",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "endPort: past the end",
                &[("x/p", RANGE)],
                "x/b -> x/a:8101",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "endPort: before the start",
                &[("x/p", RANGE)],
                "x/b -> x/a:7999",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "protocol: UDP rule, UDP connection",
                &[("x/p", UDP_53)],
                "x/b -> x/a:53/UDP",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "protocol: UDP rule, TCP connection",
                &[("x/p", UDP_53)],
                "x/b -> x/a:53/TCP",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "protocol: TCP by default",
                &[("x/p", TCP_53)],
                "x/b -> x/a:53/TCP",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "protocol: TCP by default, UDP connection",
                &[("x/p", TCP_53)],
                "x/b -> x/a:53/UDP",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "protocol: SCTP without a port is every SCTP port",
                &[("x/p", ALL_SCTP)],
                "x/b -> x/a:3868/SCTP",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "protocol: SCTP rule, TCP connection",
                &[("x/p", ALL_SCTP)],
                "x/b -> x/a:3868/TCP",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "egress isolation: the selected pod opens nothing",
                &[("x/p", EGRESS_ONLY)],
                "x/a -> x/b:80",
                "deny network-egress-denied in=- out=-",
            ),
            (
                "egress isolation: nor to outside the cluster",
                &[("x/p", EGRESS_ONLY)],
                "x/a -> 203.0.113.9:443",
                "deny network-egress-denied in=- out=-",
            ),
            (
                "egress isolation: Egress alone leaves ingress open",
                &[("x/p", EGRESS_ONLY)],
                "x/b -> x/a:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "policyTypes default: egress rules add Egress",
                &[("x/p", EGRESS_RULES)],
                "x/a -> x/c:80",
                "deny network-egress-denied in=- out=-",
            ),
            (
                "policyTypes default: an egress rule allows",
                &[("x/p", EGRESS_RULES)],
                "x/a -> x/b:80",
                "allow network-allowed in=- out=netpol[x/p]-egress[0]",
            ),
            (
                "policyTypes default: Ingress is always there",
                &[("x/p", EGRESS_RULES)],
                "x/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "policyTypes default: egress [] adds no Egress",
                &[("x/p", EGRESS_EMPTY)],
                "x/a -> x/c:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "policyTypes default: egress [] still isolates ingress",
                &[("x/p", EGRESS_EMPTY)],
                "x/c -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "policyTypes [Egress]: ingress rules are ignored",
                &[("x/p", EGRESS_TYPE_IGNORES_INGRESS)],
                "x/c -> x/a:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "policyTypes [Ingress, Egress] without rules: egress denied",
                &[("x/p", BOTH_TYPES_EMPTY)],
                "x/a -> x/b:80",
                "deny network-egress-denied in=- out=-",
            ),
            (
                "policyTypes [Ingress, Egress] without rules: ingress denied",
                &[("x/p", BOTH_TYPES_EMPTY)],
                "x/b -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "union: the first policy allows",
                &[("x/p1", FROM_B), ("x/p2", FROM_C)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p1]-ingress[0] out=-",
            ),
            (
                "union: the second policy allows",
                &[("x/p1", FROM_B), ("x/p2", FROM_C)],
                "x/c -> x/a:80",
                "allow network-allowed in=netpol[x/p2]-ingress[0] out=-",
            ),
            (
                "union: neither allows",
                &[("x/p1", FROM_B), ("x/p2", FROM_C)],
                "y/a -> x/a:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "union: a deny-all adds nothing to an allow",
                &[("x/deny", DENY_ALL), ("x/p", FROM_B)],
                "x/b -> x/a:80",
                "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
            ),
            (
                "both directions: egress and ingress allow",
                &[("x/out", A_TO_B_80), ("x/in", B_FROM_A)],
                "x/a -> x/b:80",
                "allow network-allowed in=netpol[x/in]-ingress[0] out=netpol[x/out]-egress[0]",
            ),
            (
                "both directions: egress allows, ingress refuses",
                &[("x/out", A_TO_B_80), ("x/in", B_FROM_C)],
                "x/a -> x/b:80",
                "deny network-ingress-denied in=- out=netpol[x/out]-egress[0]",
            ),
            (
                "both directions: ingress allows, egress refuses",
                &[("x/out", A_TO_B_80), ("x/in", B_FROM_A)],
                "x/a -> x/b:81",
                "deny network-egress-denied in=netpol[x/in]-ingress[0] out=-",
            ),
            (
                "unknown pod: an external source is not isolated for egress",
                &[("x/deny", EGRESS_DENY_ALL)],
                "203.0.113.9 -> x/a:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "unknown pod: an external destination is not isolated for ingress",
                &[("x/deny", DENY_ALL)],
                "x/a -> 198.51.100.7:80",
                "allow network-not-isolated in=- out=-",
            ),
            (
                "unknown pod: found by address when no workload is named",
                &[("x/deny", DENY_ALL)],
                "203.0.113.9 -> 10.0.0.1:80",
                "deny network-ingress-denied in=- out=-",
            ),
            (
                "error: a source with neither workload nor address",
                &[("x/deny", DENY_ALL)],
                " -> x/a:80",
                "deny error NetworkPolicy needs the source workload, address or SPIFFE identity, and the request gives none",
            ),
            (
                "error: a workload not in the inventory",
                &[("x/deny", DENY_ALL)],
                "x/nope -> x/a:80",
                "deny error source workload `x/nope` is not in the inventory",
            ),
        ];
        let mut failures = Vec::new();
        for (case, policies, c, want) in rows {
            let got = summary(&engine(policies), c);
            if got != *want {
                failures.push(format!("{case}\n  {c}\n  want: {want}\n   got: {got}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn no_network_policies_leave_decisions_alone() {
        let e = engine(&[]);
        assert!(e.network.is_empty());
        let d = e.decide(&conn("x/b -> x/a:80"));
        assert!(d.allowed());
        assert_eq!(d.network, None);
    }

    #[test]
    fn compile_precomputes_the_policies_selecting_each_workload() {
        let e = engine(&[
            ("x/web", ISOLATE_WEB),
            ("x/out", EGRESS_ONLY),
            ("y/all", DENY_ALL),
        ]);
        let by_name = |ns: &str, name: &str| {
            let i = e
                .inventory
                .workloads
                .iter()
                .position(|w| w.namespace == ns && w.name == name)
                .unwrap();
            e.network.selected[i].clone()
        };
        assert_eq!(
            by_name("x", "a"),
            Selected {
                ingress: vec![0],
                egress: vec![1]
            }
        );
        assert_eq!(by_name("x", "b"), Selected::default());
        assert_eq!(
            by_name("y", "b"),
            Selected {
                ingress: vec![2],
                egress: vec![]
            }
        );
        assert_eq!(by_name("z", "a"), Selected::default());
    }

    #[test]
    fn compiled_policies_survive_a_bundle() {
        let e = engine(&[
            ("x/p", IP_BLOCK),
            ("x/r", RANGE),
            ("x/n", AND_PEER),
            ("x/e", EGRESS_NAMED_81),
        ]);
        let bytes = crate::encode_bundle(&e).unwrap();
        let back = crate::decode_bundle(&bytes).unwrap();
        assert_eq!(back.network, e.network);
        assert_eq!(
            summary(&back, "203.0.113.9 -> x/a:8050"),
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-"
        );
    }

    #[test]
    fn a_policy_defined_twice_is_an_error() {
        let text = [policy_doc("x/p", DENY_ALL), policy_doc("x/p", ALLOW_ALL)].join("---\n");
        let set = load(&[SourceFile::new("p.yaml", text)]).unwrap();
        let err = compile_engine(&set, &Options::default()).unwrap_err();
        assert_eq!(
            err.diagnostics[0].message,
            "NetworkPolicy `x/p` is defined twice (p.yaml:1 and p.yaml:6)"
        );
    }

    #[test]
    fn invalid_policies_are_reported_at_their_field() {
        // (case, spec, message, path)
        let rows: &[(&str, &str, &str, &str)] = &[
            (
                "invalid CIDR",
                "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
                "invalid CIDR `10.0.0.0/33`",
                "spec.ingress[0].from[0].ipBlock.cidr",
            ),
            (
                "CIDR without prefix length",
                "{egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]}",
                "invalid CIDR `10.0.0.1`",
                "spec.egress[0].to[0].ipBlock.cidr",
            ),
            (
                "except outside cidr",
                "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.1.0.0/24]}}]}]}",
                "`except` entry `10.1.0.0/24` is not inside `cidr` `10.0.0.0/16`",
                "spec.ingress[0].from[0].ipBlock.except[1]",
            ),
            (
                "except equal to cidr",
                "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]}",
                "`except` entry `10.0.0.0/16` is not inside `cidr` `10.0.0.0/16`",
                "spec.ingress[0].from[0].ipBlock.except[0]",
            ),
            (
                "except of another family",
                "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: ['2001:db8::/64']}}]}]}",
                "`except` entry `2001:db8::/64` is not inside `cidr` `10.0.0.0/8`",
                "spec.ingress[0].from[0].ipBlock.except[0]",
            ),
            (
                "ipBlock without cidr",
                "{ingress: [{from: [{ipBlock: {except: [10.0.0.0/24]}}]}]}",
                "missing required field `cidr`",
                "spec.ingress[0].from[0].ipBlock",
            ),
            (
                "ipBlock with a selector",
                "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
                "`ipBlock` cannot be combined with `podSelector` or `namespaceSelector`",
                "spec.ingress[0].from[0].ipBlock",
            ),
            (
                "empty peer",
                "{ingress: [{from: [{}]}]}",
                "a peer needs `podSelector`, `namespaceSelector` or `ipBlock`",
                "spec.ingress[0].from[0]",
            ),
            (
                "endPort without port",
                "{ingress: [{ports: [{endPort: 90}]}]}",
                "`endPort` needs a numeric `port`",
                "spec.ingress[0].ports[0].endPort",
            ),
            (
                "endPort with a named port",
                "{egress: [{ports: [{port: http, endPort: 90}]}]}",
                "`endPort` needs a numeric `port`, not the named port `http`",
                "spec.egress[0].ports[0].endPort",
            ),
            (
                "endPort below port",
                "{ingress: [{}, {ports: [{port: 80}, {port: 100, endPort: 90}]}]}",
                "`endPort` 90 is less than `port` 100",
                "spec.ingress[1].ports[1].endPort",
            ),
            (
                "port out of range",
                "{ingress: [{ports: [{port: 70000}]}]}",
                "`70000` is out of range 1..=65535",
                "spec.ingress[0].ports[0].port",
            ),
            (
                "port zero",
                "{ingress: [{ports: [{port: 0}]}]}",
                "`0` is out of range 1..=65535",
                "spec.ingress[0].ports[0].port",
            ),
            (
                "invalid port name",
                "{ingress: [{ports: [{port: Web_Port}]}]}",
                "invalid port `Web_Port`",
                "spec.ingress[0].ports[0].port",
            ),
            (
                "unknown protocol",
                "{ingress: [{ports: [{protocol: ICMP, port: 80}]}]}",
                "unknown protocol `ICMP`",
                "spec.ingress[0].ports[0].protocol",
            ),
            (
                "lower-case protocol",
                "{ingress: [{ports: [{protocol: tcp}]}]}",
                "unknown protocol `tcp`",
                "spec.ingress[0].ports[0].protocol",
            ),
            (
                "unknown operator",
                "{podSelector: {matchExpressions: [{key: app, operator: Equals, values: [web]}]}}",
                "unknown operator `Equals`",
                "spec.podSelector.matchExpressions[0].operator",
            ),
            (
                "values with Exists",
                "{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [web]}]}}",
                "operator `Exists` takes no values",
                "spec.podSelector.matchExpressions[0].values",
            ),
            (
                "values with DoesNotExist",
                "{ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: DoesNotExist, values: [x]}]}}]}]}",
                "operator `DoesNotExist` takes no values",
                "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
            ),
            (
                "In without values",
                "{podSelector: {matchExpressions: [{key: app, operator: In}]}}",
                "operator `In` needs at least one value in `values`",
                "spec.podSelector.matchExpressions[0]",
            ),
            (
                "NotIn with empty values",
                "{egress: [{to: [{namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: []}]}}]}]}",
                "operator `NotIn` needs at least one value",
                "spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values",
            ),
            (
                "expression without operator",
                "{podSelector: {matchExpressions: [{key: app}]}}",
                "missing required field `operator`",
                "spec.podSelector.matchExpressions[0]",
            ),
            (
                "unknown policy type",
                "{policyTypes: [Ingress, Egres]}",
                "unknown policy type `Egres`",
                "spec.policyTypes[1]",
            ),
            (
                "unknown field in spec",
                "{podSelector: {}, ingres: []}",
                "unknown field `ingres`",
                "spec.ingres",
            ),
            (
                "unknown field in a rule",
                "{ingress: [{fromm: []}]}",
                "unknown field `fromm`",
                "spec.ingress[0].fromm",
            ),
            (
                "to in an ingress rule",
                "{ingress: [{to: []}]}",
                "unknown field `to`",
                "spec.ingress[0].to",
            ),
            (
                "from in an egress rule",
                "{egress: [{from: []}]}",
                "unknown field `from`",
                "spec.egress[0].from",
            ),
            (
                "unknown field in a port",
                "{ingress: [{ports: [{port: 80, end_port: 90}]}]}",
                "unknown field `end_port`",
                "spec.ingress[0].ports[0].end_port",
            ),
            (
                "unknown field in a selector",
                "{podSelector: {matchLabel: {app: web}}}",
                "unknown field `matchLabel`",
                "spec.podSelector.matchLabel",
            ),
        ];
        let mut failures = Vec::new();
        for (case, spec, message, path) in rows {
            let result = load(&[SourceFile::new("p.yaml", policy_doc("x/p", spec))]);
            match result {
                Ok(_) => failures.push(format!("{case}: accepted")),
                Err(e) => {
                    let d = &e.diagnostics[0];
                    if d.message != *message || d.path.as_deref() != Some(*path) {
                        failures.push(format!(
                            "{case}\n  want: {message} at {path}\n   got: {} at {:?}",
                            d.message, d.path
                        ));
                    }
                    if d.document.as_deref() != Some("NetworkPolicy x/p") {
                        failures.push(format!("{case}: document {:?}", d.document));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn errors_point_at_the_line_and_column() {
        let text = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16, 192.168.0.0/16]
";
        let err = load(&[SourceFile::new("p.yaml", text)]).unwrap_err();
        let d = &err.diagnostics[0];
        let l = d.location.as_ref().unwrap();
        assert_eq!((l.file.as_str(), l.line, l.column), ("p.yaml", 10, 31));
        assert_eq!(
            d.help.as_deref(),
            Some("each `except` entry must be a strict subset of `cidr`")
        );
        let unknown =
            load(&[SourceFile::new("p.yaml", text.replace("except", "exept"))]).unwrap_err();
        assert_eq!(
            unknown.diagnostics[0].help.as_deref(),
            Some("did you mean `except`?")
        );
    }

    #[test]
    fn defaults_and_shapes_are_read_as_kubernetes_reads_them() {
        let read = |spec: &str| {
            load(&[SourceFile::new("p.yaml", policy_doc("x/p", spec))])
                .unwrap()
                .network
                .remove(0)
        };
        let p = read("{}");
        assert_eq!(p.pod_selector, LabelSelector::default());
        assert_eq!(
            p.policy_types,
            PolicyTypes {
                ingress: true,
                egress: false
            }
        );
        let p = read("{policyTypes: [], egress: [{}]}");
        assert_eq!(
            p.policy_types,
            PolicyTypes {
                ingress: true,
                egress: true
            }
        );
        let p = read("{policyTypes: [Egress]}");
        assert_eq!(
            p.policy_types,
            PolicyTypes {
                ingress: false,
                egress: true
            }
        );
        let p = read(
            "{ingress: [{ports: [{port: '8080', endPort: 8090}, {protocol: UDP, port: dns}]}]}",
        );
        assert_eq!(
            p.ingress[0].ports,
            vec![
                PortMatch {
                    protocol: Transport::Tcp,
                    port: Some(PortRef::Number(8080)),
                    end_port: Some(8090)
                },
                PortMatch {
                    protocol: Transport::Udp,
                    port: Some(PortRef::Name("dns".into())),
                    end_port: None
                },
            ]
        );
        let p = read("{ingress: [{from: [{ipBlock: {cidr: 10.1.2.3/16}}]}]}");
        assert_eq!(
            p.ingress[0].peers,
            vec![Peer::IpBlock {
                cidr: "10.1.0.0/16".parse().unwrap(),
                except: vec![]
            }]
        );
    }
}
