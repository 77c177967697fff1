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
//! ```

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
    /// Named container ports.
    pub ports: Vec<NamedPort>,
}

/// A named container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedPort {
    /// The port's name (`http`).
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
}

impl Inventory {
    /// The workload named `namespace/name`.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Workload> {
        self.workloads
            .iter()
            .find(|w| w.namespace == namespace && w.name == name)
    }

    /// The workload that owns an address.
    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.ips.contains(&ip))
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
    f.finish(&["namespaces", "workloads"])?;
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
    let mut ips = Vec::new();
    if let Some(i) = f.take("ips") {
        for s in i.at().strings()? {
            ips.push(
                s.value
                    .parse::<IpAddr>()
                    .map_err(|_| s.error(format!("invalid IP address `{}`", s.value)))?,
            );
        }
    }
    let mut ports = Vec::new();
    if let Some(p) = f.take("ports") {
        for (item, path) in p.at().items()? {
            let item = item.with_path(&path);
            let mut pf = item.fields()?;
            let name = pf.require("name")?.at().string()?;
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
    ])?;
    Ok(Workload {
        name,
        namespace,
        service_account,
        labels,
        ips,
        ports,
    })
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
