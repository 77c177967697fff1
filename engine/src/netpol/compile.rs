//! Compiling NetworkPolicies: which policies select each inventory pod, per direction.

use super::*;

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
    pub(crate) fn select(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Selected {
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
