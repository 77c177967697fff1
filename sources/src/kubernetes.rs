//! Kubernetes objects, as `kubectl get namespaces,pods,serviceaccounts,services,deployments,
//! replicasets,statefulsets,daemonsets,jobs,cronjobs -A -o json` (or `-o yaml`) prints them,
//! read with Kubernetes' own types (`k8s-openapi`) and mapped to inventory workloads.
//!
//! A pod's workload name is the one Istio puts in `WORKLOAD_NAME` ([`workload_name`]).
//! Pods contribute workloads, Namespaces their labels, Nodes (and pods' `status.hostIPs`)
//! the node list; the controllers and service accounts are read to check owner chains and
//! service accounts; every other object is reported as not mapped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use palisade_engine::inventory::{self as inv, Inventory, NamedPort, Phase};
use palisade_engine::request::Transport;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Finding, Image, Import, Member, ObjectRef};

/// Istio's label that overrides the derived workload name (`service.istio.io/workload-name`).
pub const WORKLOAD_NAME_LABEL: &str = "service.istio.io/workload-name";

/// A file that is neither JSON nor YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ReadError {
    /// The file's name.
    pub file: String,
    /// What is wrong with it.
    pub message: String,
}

/// The Kubernetes objects read so far, by kind. Each object is shared (`Arc`) so that a
/// watch can hand over its stores without copying them.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// `v1` Namespaces.
    pub namespaces: Vec<Arc<Namespace>>,
    /// `v1` Pods.
    pub pods: Vec<Arc<Pod>>,
    /// `v1` Nodes.
    pub nodes: Vec<Arc<Node>>,
    /// `v1` ServiceAccounts.
    pub service_accounts: Vec<Arc<ServiceAccount>>,
    /// `v1` Services.
    pub services: Vec<Arc<Service>>,
    /// `apps/v1` Deployments.
    pub deployments: Vec<Arc<Deployment>>,
    /// `apps/v1` ReplicaSets.
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    /// `apps/v1` StatefulSets.
    pub stateful_sets: Vec<Arc<StatefulSet>>,
    /// `apps/v1` DaemonSets.
    pub daemon_sets: Vec<Arc<DaemonSet>>,
    /// `batch/v1` Jobs.
    pub jobs: Vec<Arc<Job>>,
    /// `batch/v1` CronJobs.
    pub cron_jobs: Vec<Arc<CronJob>>,
    /// Objects that could not be read or are of a kind that carries no workload facts.
    pub unmapped: Vec<Finding>,
    /// How many objects of each kind were read (`List`s not counted, their items are).
    pub counts: BTreeMap<String, usize>,
}

impl Objects {
    /// Reads one file: JSON (an object or a `List`) or YAML (one or more documents, each an
    /// object or a `List`). A file that is neither is an error; an object that does not
    /// read as its kind is recorded in [`Objects::unmapped`] and the rest is read.
    pub fn read(&mut self, file: &str, text: &str) -> Result<(), ReadError> {
        let err = |message: String| ReadError {
            file: file.to_string(),
            message,
        };
        let trimmed = text.trim_start();
        let docs = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(items)) => items,
                Ok(v) => vec![v],
                Err(e) => return Err(err(format!("invalid JSON: {e}"))),
            }
        } else {
            crate::yaml::documents(text).map_err(|e| err(format!("invalid YAML: {e}")))?
        };
        for doc in docs {
            self.add(doc);
        }
        Ok(())
    }

    /// Adds one object, or every item of a `List` (`v1 List`, or an API list such as
    /// `PodList`).
    pub fn add(&mut self, v: Value) {
        self.add_at(v, 0);
    }

    fn add_at(&mut self, mut v: Value, depth: usize) {
        let kind = str_at(&v, &["kind"]).to_string();
        let api = str_at(&v, &["apiVersion"]).to_string();
        let object = ObjectRef::new(
            if kind.is_empty() { "(no kind)" } else { &kind },
            str_at(&v, &["metadata", "namespace"]),
            str_at(&v, &["metadata", "name"]),
        );
        if kind.ends_with("List") && v.get("items").is_some() {
            if depth > 0 {
                self.unmapped
                    .push(Finding::new(object, "a list inside a list is not read"));
                return;
            }
            if let Some(Value::Array(items)) = v.get_mut("items").map(Value::take) {
                // `kubectl get -o json` writes `apiVersion`/`kind` on each item; an API
                // list response (`PodList`) leaves them to the list.
                let item_kind = kind.trim_end_matches("List").to_string();
                for mut item in items {
                    if let Value::Object(m) = &mut item
                        && !m.contains_key("kind")
                        && kind != "List"
                    {
                        m.insert("kind".into(), Value::String(item_kind.clone()));
                        m.insert("apiVersion".into(), Value::String(api.clone()));
                    }
                    self.add_at(item, depth + 1);
                }
            } else {
                self.unmapped
                    .push(Finding::new(object, "`items` is not a list"));
            }
            return;
        }
        *self.counts.entry(object.kind.clone()).or_default() += 1;
        match (api.as_str(), kind.as_str()) {
            ("v1", "Pod") => push(&mut self.pods, v, object, &mut self.unmapped),
            ("v1", "Namespace") => push(&mut self.namespaces, v, object, &mut self.unmapped),
            ("v1", "Node") => push(&mut self.nodes, v, object, &mut self.unmapped),
            ("v1", "ServiceAccount") => {
                push(&mut self.service_accounts, v, object, &mut self.unmapped)
            }
            ("v1", "Service") => push(&mut self.services, v, object, &mut self.unmapped),
            ("apps/v1", "Deployment") => push(&mut self.deployments, v, object, &mut self.unmapped),
            ("apps/v1", "ReplicaSet") => {
                push(&mut self.replica_sets, v, object, &mut self.unmapped)
            }
            ("apps/v1", "StatefulSet") => {
                push(&mut self.stateful_sets, v, object, &mut self.unmapped)
            }
            ("apps/v1", "DaemonSet") => push(&mut self.daemon_sets, v, object, &mut self.unmapped),
            ("batch/v1", "Job") => push(&mut self.jobs, v, object, &mut self.unmapped),
            ("batch/v1", "CronJob") => push(&mut self.cron_jobs, v, object, &mut self.unmapped),
            ("", _) | (_, "") => self.unmapped.push(Finding::new(
                object,
                "no `apiVersion` or `kind`: not a Kubernetes object",
            )),
            (api, kind) => self.unmapped.push(Finding::new(
                object,
                format!("`{api}` `{kind}` carries no workload facts Palisade reads"),
            )),
        }
    }

    /// The inventory these objects describe, with images and every finding.
    pub fn import(&self) -> Import {
        self.import_with(crate::containers::Containers::default())
    }

    /// The inventory these objects and `containers` describe together.
    pub fn import_with(&self, containers: crate::containers::Containers) -> Import {
        let mut notes = containers.notes;
        let mut unmapped = self.unmapped.clone();
        unmapped.extend(containers.unmapped);
        let owners = Owners::new(self);
        let mut members = containers.members;
        members.reserve(self.pods.len());
        let mut node_ips: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for n in &self.nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let object = ObjectRef::new("Node", "", &name);
            if name.is_empty() {
                unmapped.push(Finding::new(object, "a node without `metadata.name`"));
                continue;
            }
            let ips = node_ips.entry(name).or_default();
            let addresses = n.status.as_ref().and_then(|s| s.addresses.as_ref());
            for a in addresses.into_iter().flatten() {
                if a.type_ != "InternalIP" && a.type_ != "ExternalIP" {
                    continue;
                }
                match a.address.parse::<IpAddr>() {
                    Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                    Ok(_) => {}
                    Err(_) => notes.push(Finding::new(
                        object.clone(),
                        format!(
                            "`{}` address `{}` is not an IP address: left out",
                            a.type_, a.address
                        ),
                    )),
                }
            }
        }
        let mut namespaces_seen: BTreeSet<String> = BTreeSet::new();
        let pods = latest(&self.pods, "Pod", |p| &p.metadata, &mut unmapped);
        for pod in pods {
            match pod_member(pod, &owners, &mut notes) {
                Ok((m, host_ips)) => {
                    if !m.node_name.is_empty() && !host_ips.is_empty() {
                        let ips = node_ips.entry(m.node_name.clone()).or_default();
                        for ip in host_ips {
                            if !ips.contains(&ip) {
                                ips.push(ip);
                            }
                        }
                    }
                    namespaces_seen.insert(m.namespace.clone());
                    members.push(m);
                }
                Err(f) => unmapped.push(f),
            }
        }
        let mut inventory = Inventory::default();
        for ns in latest(
            &self.namespaces,
            "Namespace",
            |n| &n.metadata,
            &mut unmapped,
        ) {
            let name = ns.metadata.name.clone().unwrap_or_default();
            if name.is_empty() {
                unmapped.push(Finding::new(
                    ObjectRef::new("Namespace", "", ""),
                    "a namespace without `metadata.name`",
                ));
                continue;
            }
            let mut labels = ns.metadata.labels.clone().unwrap_or_default();
            // The engine adds this label to every namespace itself.
            if labels.get("kubernetes.io/metadata.name") == Some(&name) {
                labels.remove("kubernetes.io/metadata.name");
            }
            inventory.namespaces.push(inv::Namespace { name, labels });
        }
        inventory.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        for ns in &namespaces_seen {
            if !inventory.namespaces.iter().any(|n| &n.name == ns) {
                notes.push(Finding::new(
                    ObjectRef::new("Namespace", "", ns),
                    "has pods but is not among the objects read: its labels are unknown, so namespace selectors see only `kubernetes.io/metadata.name`",
                ));
            }
        }
        let (workloads, images) = crate::build(members, &mut notes);
        inventory.workloads = workloads;
        inventory.nodes = node_ips
            .into_iter()
            .map(|(name, ips)| inv::Node { name, ips })
            .collect();
        Import {
            inventory,
            images,
            unmapped,
            notes,
            counts: self.counts.clone(),
        }
    }
}

/// The objects without repeats: an object read twice (overlapping dumps) counts once, as
/// read last; the earlier copy is reported.
fn latest<'a, T>(
    objects: &'a [Arc<T>],
    kind: &str,
    meta: impl Fn(&T) -> &ObjectMeta,
    unmapped: &mut Vec<Finding>,
) -> Vec<&'a T> {
    let mut last: BTreeMap<(Option<&str>, Option<&str>), usize> = BTreeMap::new();
    for (i, o) in objects.iter().enumerate() {
        let m = meta(o);
        if let Some(earlier) = last.insert((m.namespace.as_deref(), m.name.as_deref()), i)
            && m.name.is_some()
        {
            let e = objects.get(earlier).map(|e| meta(e));
            unmapped.push(Finding::new(
                ObjectRef::new(
                    kind,
                    e.and_then(|e| e.namespace.as_deref()).unwrap_or(""),
                    e.and_then(|e| e.name.as_deref()).unwrap_or(""),
                ),
                "read again later: the later copy is used",
            ));
        }
    }
    let keep: BTreeSet<usize> = last.into_values().collect();
    objects
        .iter()
        .enumerate()
        .filter(|(i, o)| keep.contains(i) || meta(o).name.is_none())
        .map(|(_, o)| o.as_ref())
        .collect()
}

fn push<T: DeserializeOwned>(
    into: &mut Vec<Arc<T>>,
    v: Value,
    object: ObjectRef,
    unmapped: &mut Vec<Finding>,
) {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => into.push(Arc::new(t)),
        Err(e) => {
            let path = e.path().to_string();
            unmapped.push(Finding::new(
                object,
                format!("does not read as its kind at `{path}`: {}", e.into_inner()),
            ));
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The controllers read, by namespace and name, for checking pods' owner chains.
struct Owners<'a> {
    kinds: BTreeSet<&'static str>,
    by_name: BTreeMap<(&'static str, &'a str, &'a str), &'a ObjectMeta>,
    service_accounts: BTreeSet<(&'a str, &'a str)>,
    sa_namespaces: BTreeSet<&'a str>,
}

impl<'a> Owners<'a> {
    fn new(o: &'a Objects) -> Self {
        let mut s = Owners {
            kinds: BTreeSet::new(),
            by_name: BTreeMap::new(),
            service_accounts: BTreeSet::new(),
            sa_namespaces: BTreeSet::new(),
        };
        let mut add = |kind: &'static str, meta: &'a ObjectMeta| {
            s.kinds.insert(kind);
            let ns = meta.namespace.as_deref().unwrap_or("");
            let name = meta.name.as_deref().unwrap_or("");
            s.by_name.insert((kind, ns, name), meta);
        };
        o.replica_sets
            .iter()
            .for_each(|x| add("ReplicaSet", &x.metadata));
        o.deployments
            .iter()
            .for_each(|x| add("Deployment", &x.metadata));
        o.stateful_sets
            .iter()
            .for_each(|x| add("StatefulSet", &x.metadata));
        o.daemon_sets
            .iter()
            .for_each(|x| add("DaemonSet", &x.metadata));
        o.jobs.iter().for_each(|x| add("Job", &x.metadata));
        o.cron_jobs.iter().for_each(|x| add("CronJob", &x.metadata));
        for sa in &o.service_accounts {
            let ns = sa.metadata.namespace.as_deref().unwrap_or("");
            s.sa_namespaces.insert(ns);
            s.service_accounts
                .insert((ns, sa.metadata.name.as_deref().unwrap_or("")));
        }
        s
    }

    /// The controller of `kind` `namespace/name`, when it was read.
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&'a ObjectMeta> {
        let kind: &'static str = match kind {
            "ReplicaSet" => "ReplicaSet",
            "Deployment" => "Deployment",
            "StatefulSet" => "StatefulSet",
            "DaemonSet" => "DaemonSet",
            "Job" => "Job",
            "CronJob" => "CronJob",
            _ => return None,
        };
        self.by_name.get(&(kind, namespace, name)).copied()
    }

    fn read_kind(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| *k == kind)
    }
}

/// A workload name and the kind of object it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadName {
    /// The name (Istio's `WORKLOAD_NAME`).
    pub name: String,
    /// The kind it is derived from: `Deployment`, `CronJob`, the controller's kind, or `Pod`.
    pub kind: String,
}

/// Istio's workload name for a pod (`pkg/kube` `GetWorkloadMetaFromPod`): only a pod with a
/// `generateName` is looked into. Its controller (the owner reference with `controller:
/// true`) names it, with three heuristics needing no other object: a ReplicaSet whose name
/// ends in `-<pod-template-hash label>` is a Deployment's (Argo Rollouts:
/// `rollouts-pod-template-hash`), a ReplicationController with a `deploymentconfig` label is
/// that DeploymentConfig's, and a Job named `<name>-<8 to 10 digits>` is the CronJob
/// `<name>`'s. Otherwise, and without a controller, the pod's own name. The label
/// `service.istio.io/workload-name` overrides all of it.
pub fn workload_name(pod: &Pod) -> WorkloadName {
    let meta = &pod.metadata;
    let pod_name = meta.name.clone().unwrap_or_default();
    let labels = meta.labels.as_ref();
    let label = |k: &str| {
        labels
            .and_then(|l| l.get(k))
            .map(String::as_str)
            .unwrap_or("")
    };
    let mut out = WorkloadName {
        name: pod_name.clone(),
        kind: "Pod".into(),
    };
    let controller =
        controller(meta).filter(|_| meta.generate_name.as_deref().is_some_and(|g| !g.is_empty()));
    if let Some(c) = controller {
        out.kind.clone_from(&c.kind);
        out.name.clone_from(&c.name);
        let hash = label("pod-template-hash");
        let rollout = label("rollouts-pod-template-hash");
        if c.kind == "ReplicaSet" && !hash.is_empty() && c.name.ends_with(hash) {
            out.name = trim_suffix(&c.name, hash);
            out.kind = "Deployment".into();
        } else if c.kind == "ReplicaSet" && !rollout.is_empty() && c.name.ends_with(rollout) {
            out.name = trim_suffix(&c.name, rollout);
            out.kind = "Rollout".into();
        } else if c.kind == "ReplicationController" && !label("deploymentconfig").is_empty() {
            out.name = label("deploymentconfig").to_string();
            out.kind = "DeploymentConfig".into();
        } else if c.kind == "Job"
            && let Some(cron) = cron_job_name(&c.name)
        {
            out.name = cron.to_string();
            out.kind = "CronJob".into();
        }
    }
    if out.name.is_empty() {
        out.name = pod_name;
    }
    let over = label(WORKLOAD_NAME_LABEL);
    if !over.is_empty() {
        out.name = over.to_string();
    }
    out
}

/// `name` without `-suffix`, as Go's `TrimSuffix` (unchanged when it does not end so).
fn trim_suffix(name: &str, suffix: &str) -> String {
    name.strip_suffix(suffix)
        .and_then(|n| n.strip_suffix('-'))
        .unwrap_or(name)
        .to_string()
}

/// A Job named `<cronjob>-<8 to 10 digits>` (the CronJob controller's scheduled-time
/// suffix) belongs to CronJob `<cronjob>`: Istio's `(.+)-\d{8,10}$`.
pub fn cron_job_name(job: &str) -> Option<&str> {
    let (prefix, digits) = job.rsplit_once('-')?;
    let fits = (8..=10).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    (fits && !prefix.is_empty()).then_some(prefix)
}

fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// One pod as a member of its workload, with its node's addresses (`status.hostIPs`).
fn pod_member(
    pod: &Pod,
    owners: &Owners<'_>,
    notes: &mut Vec<Finding>,
) -> Result<(Member, Vec<IpAddr>), Finding> {
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let pod_name = meta.name.clone().unwrap_or_default();
    let object = ObjectRef::new("Pod", &namespace, &pod_name);
    if pod_name.is_empty() {
        return Err(Finding::new(object, "a pod without `metadata.name`"));
    }
    if namespace.is_empty() {
        return Err(Finding::new(
            object,
            "a pod without `metadata.namespace`: its workload cannot be placed",
        ));
    }
    let wn = workload_name(pod);
    check_owners(pod, &object, &wn, owners, notes);
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let service_account = spec
        .and_then(|s| s.service_account_name.clone().or(s.service_account.clone()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    if owners.sa_namespaces.contains(namespace.as_str())
        && !owners
            .service_accounts
            .contains(&(namespace.as_str(), service_account.as_str()))
    {
        notes.push(Finding::new(
            object.clone(),
            format!("service account `{service_account}` is not among the objects read for its namespace"),
        ));
    }
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let node_name = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();

    let mut ips = Vec::new();
    let mut raw: Vec<&str> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|v| v.iter().map(|p| p.ip.as_str()).collect())
        .unwrap_or_default();
    if raw.is_empty() {
        raw.extend(status.and_then(|s| s.pod_ip.as_deref()));
    }
    for r in raw {
        match r.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => notes.push(Finding::new(
                object.clone(),
                format!("pod address `{r}` is not an IP address: left out"),
            )),
        }
    }
    let mut host_ips = Vec::new();
    let mut raw_host: Vec<&str> = status
        .and_then(|s| s.host_ips.as_ref())
        .map(|v| v.iter().map(|p| p.ip.as_str()).collect())
        .unwrap_or_default();
    if raw_host.is_empty() {
        raw_host.extend(status.and_then(|s| s.host_ip.as_deref()));
    }
    for r in raw_host {
        match r.parse::<IpAddr>() {
            Ok(ip) if !host_ips.contains(&ip) => host_ips.push(ip),
            Ok(_) => {}
            Err(_) => notes.push(Finding::new(
                object.clone(),
                format!("host address `{r}` is not an IP address: left out"),
            )),
        }
    }
    if host_network && node_name.is_empty() && !ips.is_empty() {
        notes.push(Finding::new(
            object.clone(),
            "a hostNetwork pod with addresses but no `spec.nodeName`: its addresses are left out (they are a node's, and the node is unknown)",
        ));
        ips.clear();
    }

    let mut ports = Vec::new();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    // Sidecar containers (init containers that keep running) serve ports too.
    let sidecars = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    for c in containers.iter().chain(sidecars) {
        container_ports(c, &object, &mut ports, notes);
    }

    let phase = match status.and_then(|s| s.phase.as_deref()) {
        None | Some("") => None,
        Some("Pending") => Some(Phase::Pending),
        Some("Running") => Some(Phase::Running),
        Some("Succeeded") => Some(Phase::Succeeded),
        Some("Failed") => Some(Phase::Failed),
        Some("Unknown") => Some(Phase::Unknown),
        Some(other) => {
            notes.push(Finding::new(
                object.clone(),
                format!("unknown phase `{other}`: read as not stated (live)"),
            ));
            None
        }
    };
    let images = pod_images(pod);
    Ok((
        Member {
            object,
            namespace,
            workload: wn.name,
            labels: meta.labels.clone().unwrap_or_default(),
            service_account,
            ips,
            ports,
            phase,
            terminating: meta.deletion_timestamp.is_some(),
            host_network,
            node_name,
            images,
        },
        host_ips,
    ))
}

fn container_ports(
    c: &Container,
    object: &ObjectRef,
    ports: &mut Vec<NamedPort>,
    notes: &mut Vec<Finding>,
) {
    for p in c.ports.as_deref().unwrap_or_default() {
        let Ok(port) = u16::try_from(p.container_port) else {
            notes.push(Finding::new(
                object.clone(),
                format!(
                    "container `{}` port {} is out of range: left out",
                    c.name, p.container_port
                ),
            ));
            continue;
        };
        if port == 0 {
            notes.push(Finding::new(
                object.clone(),
                format!("container `{}` port 0 is out of range: left out", c.name),
            ));
            continue;
        }
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Transport::Tcp,
            Some("UDP") => Transport::Udp,
            Some("SCTP") => Transport::Sctp,
            Some(other) => {
                notes.push(Finding::new(
                    object.clone(),
                    format!(
                        "container `{}` port {port} has unknown protocol `{other}`: left out",
                        c.name
                    ),
                ));
                continue;
            }
        };
        let np = NamedPort {
            name: p.name.clone().unwrap_or_default(),
            port,
            protocol,
        };
        if !ports.contains(&np) {
            ports.push(np);
        }
    }
}

/// The pod's images: from `status.containerStatuses` (the runtime's resolved `imageID`), or
/// from the spec while the pod has no status yet.
fn pod_images(pod: &Pod) -> Vec<Image> {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    if !statuses.is_empty() {
        return statuses
            .iter()
            .map(|s| Image {
                container: s.name.clone(),
                image: s.image.clone(),
                digest: digest_of(&s.image_id).or_else(|| digest_of(&s.image)),
            })
            .collect();
    }
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let image = c.image.clone()?;
            Some(Image {
                container: c.name.clone(),
                digest: digest_of(&image),
                image,
            })
        })
        .collect()
}

/// The registry digest in an image reference or a runtime's image ID
/// (`docker.io/library/nginx@sha256:...`, `docker-pullable://nginx@sha256:...`). A bare
/// `sha256:...` image ID names the local image configuration, not a registry manifest, and
/// gives none.
pub fn digest_of(reference: &str) -> Option<String> {
    let (_, digest) = reference.rsplit_once('@')?;
    let (algo, hex) = digest.split_once(':')?;
    let ok = !algo.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| digest.to_string())
}

/// Notes where the objects read disagree with the name Istio derives, or an owner is missing.
fn check_owners(
    pod: &Pod,
    object: &ObjectRef,
    wn: &WorkloadName,
    owners: &Owners<'_>,
    notes: &mut Vec<Finding>,
) {
    let meta = &pod.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or("");
    let Some(c) = controller(meta) else {
        return;
    };
    if meta.generate_name.as_deref().is_none_or(str::is_empty) {
        notes.push(Finding::new(
            object.clone(),
            format!(
                "has controller {} `{}` but no `generateName`: named `{}` after itself, as Istio does",
                c.kind, c.name, wn.name
            ),
        ));
        return;
    }
    if !owners.read_kind(&c.kind) {
        return;
    }
    let Some(owner) = owners.get(&c.kind, namespace, &c.name) else {
        notes.push(Finding::new(
            object.clone(),
            format!(
                "its controller {} `{}` is not among the objects read: named `{}` from the pod alone",
                c.kind, c.name, wn.name
            ),
        ));
        return;
    };
    // The owner's own controller, where Istio's name stands for it (Deployment, CronJob).
    let expected = match (c.kind.as_str(), wn.kind.as_str()) {
        ("ReplicaSet", "Deployment") => Some("Deployment"),
        ("Job", "CronJob") => Some("CronJob"),
        _ => None,
    };
    let Some(grand_kind) = expected else {
        return;
    };
    match controller(owner) {
        Some(g) if g.kind == grand_kind && g.name == wn.name => {}
        Some(g) => notes.push(Finding::new(
            object.clone(),
            format!(
                "named `{}` as Istio derives it, but its {} `{}` is controlled by {} `{}`",
                wn.name, c.kind, c.name, g.kind, g.name
            ),
        )),
        None => notes.push(Finding::new(
            object.clone(),
            format!(
                "named `{}` as Istio derives it, but its {} `{}` has no controller",
                wn.name, c.kind, c.name
            ),
        )),
    }
}
