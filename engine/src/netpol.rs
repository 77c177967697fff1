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

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::decision::{NetworkOutcome, RuleRef, Step, Verdict};
use crate::diag::{Diagnostic, Errors};
use crate::inventory::{AddressOwner, Inventory, NamedPort, parse_transport};
use crate::meta::Origin;
use crate::request::{Endpoint, Request, Transport};
pub use crate::selector::{LabelSelector, Operator, Requirement};

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

mod compile;
mod evaluate;
mod read;
#[cfg(test)]
mod tests;

pub use compile::{CompiledNetwork, CompiledPolicy, Selected, compile};
pub use evaluate::evaluate;
pub use read::parse;
