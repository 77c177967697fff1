//! From pods and containers to inventory workloads: the one place that groups the members of
//! a workload and says what was lost doing it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_engine::inventory::{NamedPort, Phase, Workload};

use crate::{Finding, Image, ObjectRef, WorkloadImages};

/// One pod or container, named with the workload it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// The object it came from (`Pod shop/cart-7d9f-x2x4p`).
    pub object: ObjectRef,
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name (Istio's `WORKLOAD_NAME` for a pod).
    pub workload: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: String,
    /// Addresses.
    pub ips: Vec<IpAddr>,
    /// Container ports.
    pub ports: Vec<NamedPort>,
    /// Phase, when known.
    pub phase: Option<Phase>,
    /// Being deleted.
    pub terminating: bool,
    /// In its node's network namespace.
    pub host_network: bool,
    /// The node it runs on.
    pub node_name: String,
    /// Its images.
    pub images: Vec<Image>,
}

impl Member {
    fn live(&self) -> bool {
        !self.phase.is_some_and(Phase::finished)
    }
}

/// Groups members by namespace and workload name into workloads (sorted by namespace, then
/// name), with their images; what a group's members disagree on goes to `notes`.
///
/// A workload is the engine's unit of labels and addresses, so the members of one workload
/// are merged: finished members (`Succeeded`, `Failed`) are left out while a live one exists,
/// because a finished pod holds no address; labels are those every member has with the same
/// value; addresses and ports are the union; the node is kept when all members share one.
pub fn build(
    members: Vec<Member>,
    notes: &mut Vec<Finding>,
) -> (Vec<Workload>, Vec<WorkloadImages>) {
    let mut groups: BTreeMap<(String, String), Vec<Member>> = BTreeMap::new();
    for m in members {
        groups
            .entry((m.namespace.clone(), m.workload.clone()))
            .or_default()
            .push(m);
    }
    let mut workloads = Vec::with_capacity(groups.len());
    let mut images = Vec::new();
    for ((namespace, name), mut group) in groups {
        group.sort_by(|a, b| a.object.cmp(&b.object));
        let (w, imgs) = merge(&namespace, &name, group, notes);
        if !imgs.is_empty() {
            images.push(WorkloadImages {
                namespace,
                name,
                images: imgs,
            });
        }
        workloads.push(w);
    }
    (workloads, images)
}

fn merge(
    namespace: &str,
    name: &str,
    group: Vec<Member>,
    notes: &mut Vec<Finding>,
) -> (Workload, Vec<Image>) {
    let target = ObjectRef::new("Workload", namespace, name);
    let any_live = group.iter().any(Member::live);
    let (members, finished): (Vec<Member>, Vec<Member>) =
        group.into_iter().partition(|m| !any_live || m.live());
    for f in &finished {
        notes.push(Finding::new(
            f.object.clone(),
            format!(
                "finished ({}): its addresses are free for reuse, so it is left out of workload `{namespace}/{name}`, which has live pods",
                phase_name(f.phase)
            ),
        ));
    }
    let mut w = Workload {
        name: name.to_string(),
        namespace: namespace.to_string(),
        ..Workload::default()
    };
    let Some(first) = members.first() else {
        return (w, Vec::new());
    };
    w.labels = first.labels.clone();
    let mut dropped: Vec<String> = Vec::new();
    for m in members.iter().skip(1) {
        w.labels.retain(|k, v| {
            let keep = m.labels.get(k) == Some(v);
            if !keep {
                dropped.push(k.clone());
            }
            keep
        });
        for k in m.labels.keys() {
            if !first.labels.contains_key(k) {
                dropped.push(k.clone());
            }
        }
    }
    dropped.sort();
    dropped.dedup();
    if !dropped.is_empty() {
        notes.push(Finding::new(
            target.clone(),
            format!(
                "its {} members disagree on label(s) {}: the workload keeps only the labels they share",
                members.len(),
                quoted(&dropped)
            ),
        ));
    }
    w.service_account.clone_from(&first.service_account);
    w.host_network = first.host_network;
    for m in members.iter().skip(1) {
        if m.service_account != first.service_account {
            notes.push(Finding::new(
                m.object.clone(),
                format!(
                    "service account `{}` differs from `{}` of {}: workload `{namespace}/{name}` keeps the latter",
                    m.service_account, first.service_account, first.object
                ),
            ));
        }
        if m.host_network != first.host_network {
            notes.push(Finding::new(
                m.object.clone(),
                format!(
                    "hostNetwork {} differs from {} of {}: workload `{namespace}/{name}` keeps the latter",
                    m.host_network, first.host_network, first.object
                ),
            ));
        }
    }
    let mut imgs: Vec<Image> = Vec::new();
    for m in &members {
        for ip in &m.ips {
            if w.ips.contains(ip) {
                notes.push(Finding::new(
                    m.object.clone(),
                    format!(
                        "address `{ip}` is listed again in workload `{namespace}/{name}`: kept once"
                    ),
                ));
            } else {
                w.ips.push(*ip);
            }
        }
        for p in &m.ports {
            if !w.ports.contains(p) {
                w.ports.push(p.clone());
            }
        }
        imgs.extend(m.images.iter().cloned());
    }
    imgs.sort();
    imgs.dedup();
    w.phase = merged_phase(&members);
    w.terminating = members.iter().all(|m| m.terminating);
    if members.iter().all(|m| m.node_name == first.node_name) {
        w.node_name.clone_from(&first.node_name);
    } else if w.host_network && !w.ips.is_empty() {
        // A hostNetwork workload's addresses are its nodes'; the engine needs the one node
        // they belong to, which several nodes do not give. The nodes list them instead.
        notes.push(Finding::new(
            target,
            "its hostNetwork members run on several nodes: their addresses are those nodes' and are left to the node list",
        ));
        w.ips.clear();
    }
    (w, imgs)
}

/// One phase for the group: the common one, else the most alive one.
fn merged_phase(members: &[Member]) -> Option<Phase> {
    let first = members.first()?.phase;
    if members.iter().all(|m| m.phase == first) {
        return first;
    }
    let has = |p: Phase| members.iter().any(|m| m.phase == Some(p));
    [
        Phase::Running,
        Phase::Pending,
        Phase::Unknown,
        Phase::Failed,
        Phase::Succeeded,
    ]
    .into_iter()
    .find(|p| has(*p))
}

pub(crate) fn phase_name(p: Option<Phase>) -> &'static str {
    match p {
        None => "phase not stated",
        Some(Phase::Pending) => "Pending",
        Some(Phase::Running) => "Running",
        Some(Phase::Succeeded) => "Succeeded",
        Some(Phase::Failed) => "Failed",
        Some(Phase::Unknown) => "Unknown",
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
