//! What a compiled engine holds, for `check` and `inspect`: policies, workloads, and which
//! policies apply to which workload.

use std::fmt::Write as _;

use palisade_engine::Engine;
use serde::Serialize;

/// Counts of AuthorizationPolicies.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzCounts {
    /// Every AuthorizationPolicy.
    pub total: usize,
    /// `action: ALLOW` (the default).
    pub allow: usize,
    /// `action: DENY`.
    pub deny: usize,
    /// `action: AUDIT`.
    pub audit: usize,
    /// Of those, `istio.io/dry-run: "true"`.
    pub dry_run: usize,
}

/// One AuthorizationPolicy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    /// `namespace/name`.
    pub id: String,
    /// `ALLOW`, `DENY` or `AUDIT`.
    pub action: &'static str,
    /// Dry-run.
    pub dry_run: bool,
    /// Number of rules.
    pub rules: usize,
    /// `selector.matchLabels`, `namespace` (no selector) or `targetRefs`.
    pub scope: String,
    /// File and line.
    pub origin: String,
}

/// One inventory workload and the AuthorizationPolicies that apply to it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSummary {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Service account.
    pub service_account: String,
    /// `namespace/name` of every policy that applies.
    pub policies: Vec<String>,
}

/// A policy that applies to no inventory workload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unselected {
    /// `namespace/name`.
    pub id: String,
    /// File and line.
    pub origin: String,
    /// Why: it selects none, or it is for gateways and waypoints (`targetRefs`).
    pub reason: &'static str,
}

/// The summary of an engine.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineSummary {
    /// AuthorizationPolicy counts.
    pub authorization_policies: AuthzCounts,
    /// Every AuthorizationPolicy.
    pub policies: Vec<PolicySummary>,
    /// Every inventory workload.
    pub workloads: Vec<WorkloadSummary>,
    /// Policies that select no inventory workload.
    pub unselected_policies: Vec<Unselected>,
}

/// Summarises an engine.
pub fn summarise(engine: &Engine) -> EngineSummary {
    let mut counts = AuthzCounts::default();
    let mut policies = Vec::new();
    for p in engine.policies() {
        counts.total += 1;
        match p.action.as_str() {
            "ALLOW" => counts.allow += 1,
            "DENY" => counts.deny += 1,
            _ => counts.audit += 1,
        }
        if p.dry_run {
            counts.dry_run += 1;
        }
        let scope = if p.target_refs {
            "targetRefs".to_string()
        } else {
            match &p.selector {
                None => "namespace".to_string(),
                Some(l) => {
                    let labels: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("selector {}", labels.join(","))
                }
            }
        };
        policies.push(PolicySummary {
            id: format!("{}/{}", p.namespace, p.name),
            action: p.action.as_str(),
            dry_run: p.dry_run,
            rules: p.rules.len(),
            scope,
            origin: p.origin.clone(),
        });
    }
    let workloads: Vec<WorkloadSummary> = engine
        .inventory()
        .workloads
        .iter()
        .zip(
            engine
                .views()
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .map(|(w, v)| WorkloadSummary {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            service_account: w.service_account.clone(),
            policies: v.map(|v| v.policies.clone()).unwrap_or_default(),
        })
        .collect();
    let unselected = engine
        .policies()
        .iter()
        .filter_map(|p| {
            let id = format!("{}/{}", p.namespace, p.name);
            let used = workloads.iter().any(|w| w.policies.contains(&id));
            (!used).then(|| Unselected {
                id,
                origin: p.origin.clone(),
                reason: if p.target_refs {
                    "uses targetRefs (gateways and waypoints only)"
                } else {
                    "selects no inventory workload"
                },
            })
        })
        .collect();
    EngineSummary {
        authorization_policies: counts,
        policies,
        workloads,
        unselected_policies: unselected,
    }
}

impl AuthzCounts {
    /// `6 (ALLOW 4, DENY 1, AUDIT 1; 1 dry-run)`.
    pub fn human(&self) -> String {
        format!(
            "{} (ALLOW {}, DENY {}, AUDIT {}; {} dry-run)",
            self.total, self.allow, self.deny, self.audit, self.dry_run
        )
    }
}

impl EngineSummary {
    /// The workloads and their policies, then the unselected policies, as aligned text.
    pub fn human_workloads(&self, out: &mut String) {
        let _ = writeln!(out, "inventory workloads: {}", self.workloads.len());
        let width = self
            .workloads
            .iter()
            .map(|w| w.namespace.len() + w.name.len() + 1)
            .max()
            .unwrap_or(0);
        for w in &self.workloads {
            let id = format!("{}/{}", w.namespace, w.name);
            let policies = if w.policies.is_empty() {
                "(no AuthorizationPolicy)".to_string()
            } else {
                w.policies.join(", ")
            };
            let _ = writeln!(out, "  {id:<width$}  {policies}");
        }
        if !self.unselected_policies.is_empty() {
            let _ = writeln!(
                out,
                "policies that apply to no inventory workload: {}",
                self.unselected_policies.len()
            );
            for u in &self.unselected_policies {
                let _ = writeln!(out, "  {}  {} ({})", u.id, u.reason, u.origin);
            }
        }
    }

    /// Every policy with its action, rule count, scope and origin.
    pub fn human_policies(&self, out: &mut String) {
        let width = self.policies.iter().map(|p| p.id.len()).max().unwrap_or(0);
        let scope_width = self
            .policies
            .iter()
            .map(|p| p.scope.len())
            .max()
            .unwrap_or(0);
        for p in &self.policies {
            let action = if p.dry_run {
                format!("{} (dry-run)", p.action)
            } else {
                p.action.to_string()
            };
            let rules = if p.rules == 1 { "rule" } else { "rules" };
            let _ = writeln!(
                out,
                "  {:<width$}  {action:<15} {:>3} {rules:<5}  {:<scope_width$}  {}",
                p.id, p.rules, p.scope, p.origin
            );
        }
    }
}
