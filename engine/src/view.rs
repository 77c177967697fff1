//! Workload views: everything that applies to one workload, indexed for both protocols, and
//! the bounded cache of views built for destinations described inline.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::authn;
use crate::authz::Action;
use crate::authz::translate::{CompiledPolicy, CompiledRule};
use crate::index::{RuleSet, build_set};
use crate::options::Options;
use crate::request::Protocol;

/// The groups for one protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    /// Enforced DENY rules.
    pub deny: RuleSet,
    /// Enforced ALLOW rules.
    pub allow: RuleSet,
    /// AUDIT rules.
    pub audit: RuleSet,
    /// Dry-run ALLOW rules.
    pub shadow_allow: RuleSet,
    /// Dry-run DENY rules.
    pub shadow_deny: RuleSet,
    /// Whether any enforced ALLOW policy applies (even one without rules).
    pub has_allow: bool,
    /// Whether any dry-run ALLOW policy applies.
    pub has_shadow_allow: bool,
    /// Whether any dry-run DENY policy applies.
    pub has_shadow_deny: bool,
    /// CUSTOM rules, one group per provider, sorted by provider name (Istio's filter order).
    pub custom: Vec<CustomGroup>,
}

/// The CUSTOM rules of one provider for one workload and protocol: in Envoy, an RBAC filter
/// (the enforced rules as DENY shadow rules, the dry-run ones as enforced DENY rules) followed
/// by the provider's `ext_authz` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomGroup {
    /// The provider's name.
    pub provider: String,
    /// Whether the mesh declares the provider. When it does not, Istio generates the enforced
    /// rules as DENY rules (`…-deny-due-to-bad-CUSTOM-action`) and no `ext_authz` filter.
    pub declared: bool,
    /// Rules of enforced policies: a match asks the provider.
    pub enforced: RuleSet,
    /// Rules of dry-run policies. Istio master puts them in the RBAC filter's enforced `rules`
    /// with action DENY, so a match is denied there, before the provider is asked.
    pub dry_run: RuleSet,
}

/// Everything that applies to one workload, indexed for both protocols.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadView {
    /// HTTP groups.
    pub http: Groups,
    /// TCP groups.
    pub tcp: Groups,
    /// Names (`ns/name`) of the policies that apply, for summaries.
    pub policies: Vec<String>,
    /// The workload's `jwt_authn` providers, from the RequestAuthentications that apply, in
    /// Istio's order (see [`authn::providers_for`]).
    pub jwt_providers: Vec<authn::JwtProvider>,
}

/// A bounded cache of views for inline destinations (see [`Engine::inline_views`](crate::Engine::inline_views)): at most
/// [`ViewCache::CAPACITY`] entries, emptied when full. Looked up by a hash of the namespace and
/// labels and checked against them, so a hit allocates nothing. Shared between threads behind
/// a mutex; a poisoned lock only means the view is built again.
#[derive(Default)]
pub struct ViewCache(std::sync::Mutex<ViewMap>);

/// Views by the hash of their destination, each with the destination it was built for.
type ViewMap = FxHashMap<u64, Vec<(InlineKey, Arc<WorkloadView>)>>;

/// An inline destination: its namespace and its labels, sorted.
type InlineKey = (String, Vec<(String, String)>);

impl ViewCache {
    /// The most views kept.
    pub const CAPACITY: usize = 1024;

    /// How many views are kept now.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.values().map(Vec::len).sum())
    }

    /// Whether no view is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The view for a destination, built by `build` when it is not kept yet.
    pub(crate) fn get_or_build(
        &self,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
        build: impl FnOnce(&str, &[(String, String)]) -> WorkloadView,
    ) -> Arc<WorkloadView> {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        namespace.hash(&mut h);
        labels.hash(&mut h);
        let hash = h.finish();
        let same = |(ns, l): &InlineKey| {
            ns == namespace
                && l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((a, b), (c, d))| a == c && b == d)
        };
        if let Ok(map) = self.0.lock()
            && let Some((_, v)) = map.get(&hash).and_then(|e| e.iter().find(|(k, _)| same(k)))
        {
            return Arc::clone(v);
        }
        let key: InlineKey = (
            namespace.to_string(),
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        let view = Arc::new(build(&key.0, &key.1));
        if let Ok(mut map) = self.0.lock() {
            if map.values().map(Vec::len).sum::<usize>() >= Self::CAPACITY {
                map.clear();
            }
            map.entry(hash).or_default().push((key, Arc::clone(&view)));
        }
        view
    }
}

impl Clone for ViewCache {
    fn clone(&self) -> Self {
        ViewCache::default()
    }
}

impl PartialEq for ViewCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ViewCache {}

impl std::fmt::Debug for ViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewCache({} views)", self.len())
    }
}

// ---------------------------------------------------------------------------------------
// Building views.

impl crate::inventory::Workload {
    pub(crate) fn labels_vec(&self) -> Vec<(String, String)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// What views are built from: the compiled AuthorizationPolicies and RequestAuthentications
/// and the options they were compiled with.
pub(crate) struct ViewInputs<'a> {
    pub(crate) options: &'a Options,
    pub(crate) policies: &'a [CompiledPolicy],
    pub(crate) rules: &'a [CompiledRule],
    pub(crate) authentication: &'a [authn::CompiledRequestAuthentication],
}

impl ViewInputs<'_> {
    /// Whether a policy applies to a workload in `namespace` with `labels`.
    fn applies(&self, p: &CompiledPolicy, namespace: &str, labels: &[(String, String)]) -> bool {
        if p.target_refs {
            return false;
        }
        if p.namespace != namespace && p.namespace != self.options.root_namespace {
            return false;
        }
        match &p.selector {
            None => true,
            Some(sel) => sel
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)),
        }
    }

    /// Builds the indexed view of everything that applies to one workload.
    pub(crate) fn build_view(&self, namespace: &str, labels: &[(String, String)]) -> WorkloadView {
        let mut view = WorkloadView {
            jwt_providers: authn::providers_for(
                self.authentication,
                &self.options.root_namespace,
                namespace,
                labels,
            ),
            ..WorkloadView::default()
        };
        let mut members: [Vec<u32>; 5] = Default::default();
        // Per provider (sorted, as Istio orders the filter pairs): enforced and dry-run rules.
        let mut custom: std::collections::BTreeMap<String, (Vec<u32>, Vec<u32>)> =
            std::collections::BTreeMap::new();
        for p in self.policies {
            if !self.applies(p, namespace, labels) {
                continue;
            }
            view.policies.push(format!("{}/{}", p.namespace, p.name));
            let slot = match (p.action, p.dry_run) {
                (Action::Deny, false) => 0,
                (Action::Allow, false) => 1,
                (Action::Audit, _) => 2,
                (Action::Allow, true) => 3,
                (Action::Deny, true) => 4,
                (Action::Custom, dry_run) => {
                    let provider = p.provider.clone().unwrap_or_default();
                    let entry = custom.entry(provider).or_default();
                    let ids = if dry_run { &mut entry.1 } else { &mut entry.0 };
                    ids.extend_from_slice(&p.rules);
                    continue;
                }
            };
            for g in [&mut view.http, &mut view.tcp] {
                match slot {
                    1 => g.has_allow = true,
                    3 => g.has_shadow_allow = true,
                    4 => g.has_shadow_deny = true,
                    _ => {}
                }
            }
            if let Some(m) = members.get_mut(slot) {
                m.extend_from_slice(&p.rules);
            }
        }
        for (proto, groups) in [
            (Protocol::Http, &mut view.http),
            (Protocol::Tcp, &mut view.tcp),
        ] {
            let sets = [
                &mut groups.deny,
                &mut groups.allow,
                &mut groups.audit,
                &mut groups.shadow_allow,
                &mut groups.shadow_deny,
            ];
            for (set, ids) in sets.into_iter().zip(members.iter()) {
                *set = build_set(self.rules, ids, proto);
            }
            for (provider, (enforced, dry_run)) in &custom {
                let declared = self
                    .options
                    .extension_providers
                    .iter()
                    .find(|e| &e.name == provider);
                // Envoy's network filters have no HTTP ext_authz: Istio skips an HTTP
                // provider's CUSTOM rules on TCP (an undeclared provider's still deny).
                if proto == Protocol::Tcp && declared.is_some_and(|e| !e.is_grpc()) {
                    continue;
                }
                groups.custom.push(CustomGroup {
                    provider: provider.clone(),
                    declared: declared.is_some(),
                    enforced: build_set(self.rules, enforced, proto),
                    // An undeclared provider's dry-run rules generate nothing.
                    dry_run: if declared.is_some() {
                        build_set(self.rules, dry_run, proto)
                    } else {
                        RuleSet::default()
                    },
                });
            }
        }
        view
    }
}
