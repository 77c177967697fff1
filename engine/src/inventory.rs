//! The inventory: what the orchestrator knows about workloads and namespaces — names,
//! service accounts, labels, addresses and named ports. Policies select by labels and name
//! ports; requests carry addresses; the inventory joins them.
//!
//! ```yaml
//! apiVersion: palisade.dev/v1alpha1
//! kind: Inventory
//! metadata:
//!   name: shop
//! spec:
//!   namespaces:
//!     - name: shop
//!       labels: {team: shop}
//!   workloads:
//!     - name: frontend
//!       namespace: shop
//!       serviceAccount: frontend
//!       labels: {app: frontend}
//!       ips: [10.0.1.5]
//!       ports:
//!         - {name: http, port: 8080, protocol: TCP}
//!       phase: Running        # Kubernetes' pod phase; absent: not stated
//!       nodeName: node-a
//!     - name: node-exporter
//!       namespace: monitoring
//!       hostNetwork: true     # its addresses are its node's
//!       nodeName: node-a
//!       ips: [192.168.0.10]
//!   nodes:
//!     - name: node-a
//!       ips: [192.168.0.10]
//! ```
//!
//! An address leads to an identity only when exactly one live pod holds it
//! ([`Inventory::owner_of`]): a finished pod (`Succeeded`, `Failed`) no longer holds its
//! address (Kubernetes gives it to the next pod), a node's address (a listed node, or a
//! `hostNetwork` pod's) is node traffic, and an address two live pods claim is ambiguous —
//! decided by no one's labels, an error ([`Inventory::warnings`] names both at check time).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::request::Transport;
use crate::yaml::{At, DResult, Fields};

/// A workload (a pod, or a set of identical pods).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Name, unique in its namespace.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account (`default` when not given, as in Kubernetes).
    pub service_account: String,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Pod addresses.
    pub ips: Vec<IpAddr>,
    /// Container ports (named or not).
    pub ports: Vec<NamedPort>,
    /// The pod's phase (`status.phase`); `None` when the inventory does not say.
    pub phase: Option<Phase>,
    /// Being deleted (`metadata.deletionTimestamp` set): still running and holding its
    /// addresses until it stops, but no longer an endpoint the mesh routes new requests to.
    pub terminating: bool,
    /// Runs in its node's network namespace (`spec.hostNetwork`): its addresses are the
    /// node's, and its connections are node connections.
    pub host_network: bool,
    /// The node it runs on (`spec.nodeName`); empty when not scheduled or not stated.
    pub node_name: String,
}

/// Kubernetes' pod phase (`status.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, not every container started yet (it may have no address).
    Pending,
    /// Bound to a node, at least one container running.
    Running,
    /// Every container exited successfully and will not restart.
    Succeeded,
    /// Every container exited, at least one in failure.
    Failed,
    /// The node could not be asked.
    Unknown,
}

impl Phase {
    /// Whether the pod's containers are gone for good, so its addresses are free for reuse.
    pub fn finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

impl Workload {
    /// Whether the workload may still hold its addresses: anything but a finished pod
    /// (a pod whose phase is not stated counts as live).
    pub fn live(&self) -> bool {
        !self.phase.is_some_and(Phase::finished)
    }
}

/// A node: its name and addresses (`status.addresses` of type `InternalIP`/`ExternalIP`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
}

/// Who holds an address, as a decision must see it ([`Inventory::owner_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressOwner<'a> {
    /// Exactly one live pod-network workload (index into [`Inventory::workloads`]).
    Workload(usize),
    /// A node: a listed node's address, or a `hostNetwork` workload's. The node's name when
    /// known.
    Node(&'a str),
    /// Several live workloads claim it: deciding by either's labels would be a guess.
    Ambiguous(usize, usize),
    /// No live workload or node holds it: an address outside the inventory.
    External,
}

/// A container port (`containerPort`), named or not; only named ports can be referred to by
/// name in policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedPort {
    /// The port's name (`http`); empty when the port has none.
    pub name: String,
    /// The number.
    pub port: u16,
    /// The transport (`TCP` by default).
    pub protocol: Transport,
}

/// A namespace and its labels (`kubernetes.io/metadata.name` is added as Kubernetes does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Workloads and namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Every workload.
    pub workloads: Vec<Workload>,
    /// Every namespace with labels.
    pub namespaces: Vec<Namespace>,
    /// Nodes and their addresses (for telling node traffic from pod traffic).
    pub nodes: Vec<Node>,
}

/// Something about the inventory a person should look at, that does not stop it from
/// loading (decisions that depend on it fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryWarning {
    /// What, in one sentence naming the workloads.
    pub message: String,
}

impl Inventory {
    /// The workload named `namespace/name`.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Workload> {
        self.workloads
            .iter()
            .find(|w| w.namespace == namespace && w.name == name)
    }

    /// Who holds an address: the one live pod-network workload that lists it, a node (a
    /// listed node's address or a `hostNetwork` workload's), several live workloads
    /// (ambiguous: never guessed), or no one. Finished pods hold no address.
    pub fn owner_of(&self, ip: IpAddr) -> AddressOwner<'_> {
        if let Some(node) = self.nodes.iter().find(|n| n.ips.contains(&ip)) {
            return AddressOwner::Node(&node.name);
        }
        let mut pods = None;
        let mut host = None;
        for (i, w) in self.workloads.iter().enumerate() {
            if !w.live() || !w.ips.contains(&ip) {
                continue;
            }
            if w.host_network {
                host.get_or_insert(w.node_name.as_str());
                continue;
            }
            match pods {
                None => pods = Some(i),
                Some(first) => return AddressOwner::Ambiguous(first, i),
            }
        }
        match (pods, host) {
            (Some(i), None) => AddressOwner::Workload(i),
            (None, Some(node)) => AddressOwner::Node(node),
            (None, None) => AddressOwner::External,
            // A pod-network pod and a host-network pod on one address: one of the two
            // records is stale; which one is not for us to guess.
            (Some(i), Some(_)) => self
                .workloads
                .iter()
                .position(|w| w.live() && w.host_network && w.ips.contains(&ip))
                .map_or(AddressOwner::Workload(i), |h| AddressOwner::Ambiguous(i, h)),
        }
    }

    /// The node a workload runs on and whether it is in the node's network, for deciding
    /// its connections as node traffic.
    pub fn node_of(&self, workload: usize) -> Option<&str> {
        self.workloads
            .get(workload)
            .map(|w| w.node_name.as_str())
            .filter(|n| !n.is_empty())
    }

    /// Addresses held by more than one workload, each naming both (finished pods included:
    /// a finished pod listing a live pod's address is a stale record worth knowing about).
    /// Host-network workloads on one node share its addresses by design and are not
    /// reported against each other.
    pub fn warnings(&self) -> Vec<InventoryWarning> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for (i, w) in self.workloads.iter().enumerate() {
            for ip in &w.ips {
                let Some(&first) = seen.get(ip) else {
                    seen.insert(*ip, i);
                    continue;
                };
                let Some(f) = self.workloads.get(first) else {
                    continue;
                };
                if f.host_network && w.host_network && f.node_name == w.node_name {
                    continue;
                }
                let state = |w: &Workload| match w.phase {
                    Some(p) if p.finished() => format!(" ({p:?}, finished)"),
                    _ if w.host_network => " (hostNetwork)".to_string(),
                    _ => String::new(),
                };
                let resolution = match self.owner_of(*ip) {
                    AddressOwner::Workload(k) => {
                        self.workloads.get(k).map_or_else(String::new, |o| {
                            format!("; it resolves to the live `{}/{}`", o.namespace, o.name)
                        })
                    }
                    AddressOwner::Ambiguous(..) => {
                        "; requests from or to it fail closed until one record is removed"
                            .to_string()
                    }
                    AddressOwner::Node(n) => format!("; it is node `{n}`'s address"),
                    AddressOwner::External => "; no live workload holds it".to_string(),
                };
                out.push(InventoryWarning {
                    message: format!(
                        "address `{ip}` is held by workload `{}/{}`{} and workload `{}/{}`{}{resolution}",
                        f.namespace,
                        f.name,
                        state(f),
                        w.namespace,
                        w.name,
                        state(w)
                    ),
                });
            }
        }
        out
    }

    /// A namespace's labels, with `kubernetes.io/metadata.name` always present.
    pub fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), name.into());
        labels
    }

    /// Adds another inventory document's content.
    pub fn merge(&mut self, other: Inventory) {
        self.workloads.extend(other.workloads);
        for node in other.nodes {
            match self.nodes.iter_mut().find(|n| n.name == node.name) {
                Some(existing) => existing.ips.extend(node.ips),
                None => self.nodes.push(node),
            }
        }
        for ns in other.namespaces {
            match self.namespaces.iter_mut().find(|n| n.name == ns.name) {
                Some(existing) => existing.labels.extend(ns.labels),
                None => self.namespaces.push(ns),
            }
        }
    }
}

/// Reads an `Inventory` document's `spec`.
pub fn parse(mut top: Fields<'_>) -> DResult<Inventory> {
    let spec = top.take("spec");
    top.finish(&["apiVersion", "kind", "metadata", "spec"])?;
    let mut inv = Inventory::default();
    let Some(spec) = spec else {
        return Ok(inv);
    };
    let at = spec.at();
    let mut f = at.fields()?;
    let namespaces = f.take("namespaces");
    let workloads = f.take("workloads");
    let nodes = f.take("nodes");
    f.finish(&["namespaces", "workloads", "nodes"])?;
    if let Some(nodes) = nodes {
        for (item, path) in nodes.at().items()? {
            let item = item.with_path(&path);
            let mut nf = item.fields()?;
            let name = nf.require("name")?.at().string()?;
            let ips = match nf.take("ips") {
                Some(i) => parse_ips(i.at())?,
                None => Vec::new(),
            };
            nf.finish(&["name", "ips"])?;
            if inv.nodes.iter().any(|n| n.name == name) {
                return Err(item.error(format!("node `{name}` is listed twice")));
            }
            inv.nodes.push(Node { name, ips });
        }
    }
    if let Some(ns) = namespaces {
        for (item, path) in ns.at().items()? {
            let item = item.with_path(&path);
            let mut nf = item.fields()?;
            let name = nf.require("name")?.at().string()?;
            let labels = match nf.take("labels") {
                Some(l) => l.at().string_map()?.into_iter().collect(),
                None => BTreeMap::new(),
            };
            nf.finish(&["name", "labels"])?;
            inv.namespaces.push(Namespace { name, labels });
        }
    }
    if let Some(ws) = workloads {
        for (item, path) in ws.at().items()? {
            let w = parse_workload(item.with_path(&path))?;
            if inv.workload(&w.namespace, &w.name).is_some() {
                return Err(item.with_path(&path).error(format!(
                    "workload `{}/{}` is listed twice",
                    w.namespace, w.name
                )));
            }
            inv.workloads.push(w);
        }
    }
    Ok(inv)
}

fn parse_workload(at: At<'_>) -> DResult<Workload> {
    let mut f = at.fields()?;
    let name = f.require("name")?.at().string()?;
    let namespace = f.require("namespace")?.at().string()?;
    let service_account = match f.take("serviceAccount") {
        Some(s) => s.at().string()?,
        None => "default".to_string(),
    };
    let labels = match f.take("labels") {
        Some(l) => l.at().string_map()?.into_iter().collect(),
        None => BTreeMap::new(),
    };
    let ips = match f.take("ips") {
        Some(i) => parse_ips(i.at())?,
        None => Vec::new(),
    };
    let phase = match f.take("phase") {
        Some(p) => Some(parse_phase(p.at())?),
        None => None,
    };
    let terminating = match f.take("terminating") {
        Some(t) => t.at().boolean()?,
        None => false,
    };
    let host_network = match f.take("hostNetwork") {
        Some(h) => h.at().boolean()?,
        None => false,
    };
    let node_name = match f.take("nodeName") {
        Some(n) => n.at().string()?,
        None => String::new(),
    };
    let mut ports = Vec::new();
    if let Some(p) = f.take("ports") {
        for (item, path) in p.at().items()? {
            let item = item.with_path(&path);
            let mut pf = item.fields()?;
            // Kubernetes allows unnamed container ports; only named-port rules need a name.
            let name = match pf.take("name") {
                Some(n) => n.at().string()?,
                None => String::new(),
            };
            let port = pf.require("port")?.at().integer(1, 65535)?;
            let protocol = match pf.take("protocol") {
                None => Transport::Tcp,
                Some(p) => parse_transport(p.at())?,
            };
            pf.finish(&["name", "port", "protocol"])?;
            ports.push(NamedPort {
                name,
                port: u16::try_from(port).unwrap_or(0),
                protocol,
            });
        }
    }
    f.finish(&[
        "name",
        "namespace",
        "serviceAccount",
        "labels",
        "ips",
        "ports",
        "phase",
        "terminating",
        "hostNetwork",
        "nodeName",
    ])?;
    if host_network && node_name.is_empty() && !ips.is_empty() {
        return Err(at
            .error(format!(
                "hostNetwork workload `{namespace}/{name}` has addresses but no `nodeName`"
            ))
            .with_help("its addresses are its node's: name the node, so its traffic is decided as that node's"));
    }
    Ok(Workload {
        name,
        namespace,
        service_account,
        labels,
        ips,
        ports,
        phase,
        terminating,
        host_network,
        node_name,
    })
}

fn parse_ips(at: At<'_>) -> DResult<Vec<IpAddr>> {
    at.strings()?
        .into_iter()
        .map(|s| {
            s.value
                .parse::<IpAddr>()
                .map_err(|_| s.error(format!("invalid IP address `{}`", s.value)))
        })
        .collect()
}

/// Kubernetes' `status.phase` values, spelled as Kubernetes spells them.
fn parse_phase(at: At<'_>) -> DResult<Phase> {
    match at.string()?.as_str() {
        "Pending" => Ok(Phase::Pending),
        "Running" => Ok(Phase::Running),
        "Succeeded" => Ok(Phase::Succeeded),
        "Failed" => Ok(Phase::Failed),
        "Unknown" => Ok(Phase::Unknown),
        other => Err(at
            .error(format!("unknown pod phase `{other}`"))
            .with_help("expected `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`")),
    }
}

/// `TCP`, `UDP` or `SCTP`.
pub fn parse_transport(at: At<'_>) -> DResult<Transport> {
    match at.string()?.as_str() {
        "TCP" => Ok(Transport::Tcp),
        "UDP" => Ok(Transport::Udp),
        "SCTP" => Ok(Transport::Sctp),
        other => Err(at
            .error(format!("unknown protocol `{other}`"))
            .with_help("expected `TCP`, `UDP` or `SCTP`")),
    }
}
