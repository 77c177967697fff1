//! Deciding a connection: resolve both ends, then egress at the source and ingress at the
//! destination; both must allow.

use std::borrow::Cow;
use std::net::IpAddr;

use super::*;
use crate::error::{NetworkError, Side as End};
use crate::selector::Labels;

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
    side: End,
    nodes: NodeTraffic,
) -> Result<Side<'a>, NetworkError> {
    // `named`: the request names the workload (so a `hostNetwork` pod can be told apart from
    // its node in `HostNetworkPods::Pod`).
    let known = |i: usize, named: bool| -> Result<Side<'a>, NetworkError> {
        let w = inventory
            .workloads
            .get(i)
            .ok_or(NetworkError::WorkloadMissing)?;
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
        let selected = net
            .selected
            .get(i)
            .map(Cow::Borrowed)
            .ok_or(NetworkError::StaleBundle)?;
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
                    .ok_or_else(|| NetworkError::UnknownWorkload {
                        side,
                        namespace: w.namespace.clone(),
                        name: name.clone(),
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
                        (Some(_), Some(_)) => Err(NetworkError::SharedIdentity {
                            side,
                            namespace: ns.to_string(),
                            service_account: sa.to_string(),
                        }),
                        (None, _) => Err(NetworkError::UnknownIdentity {
                            side,
                            namespace: ns.to_string(),
                            service_account: sa.to_string(),
                        }),
                    }
                }
                None => Err(NetworkError::NoEndpoint { side }),
            },
        },
    }
}

/// The error for an address two live workloads claim.
fn ambiguous(inventory: &Inventory, side: End, ip: IpAddr, a: usize, b: usize) -> NetworkError {
    let name = |i: usize| {
        inventory
            .workloads
            .get(i)
            .map_or_else(String::new, |w| format!("`{}/{}`", w.namespace, w.name))
    };
    NetworkError::AmbiguousAddress {
        side,
        ip,
        first: name(a),
        second: name(b),
    }
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
) -> Result<NetworkOutcome, NetworkError> {
    let src = resolve(net, inventory, &req.source, End::Source, nodes)?;
    let dst = resolve(net, inventory, &req.destination, End::Destination, nodes)?;
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
