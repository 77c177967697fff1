//! The mesh settings a policy set is compiled with.

use serde::{Deserialize, Serialize};

use crate::extauthz;
use crate::netpol::NodeTraffic;
use crate::normalize::PathNormalization;

/// Mesh settings that change how policies are read and requests are seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Options {
    /// Policies in this namespace apply mesh-wide (Istio's `rootNamespace`).
    pub root_namespace: String,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// Other trust domains treated as the same (`trustDomainAliases`): principals in policies
    /// written for any of these match peers of every one of them.
    pub trust_domain_aliases: Vec<String>,
    /// How request paths are normalised before matching (Istio's `pathNormalization`).
    pub path_normalization: PathNormalization,
    /// How NetworkPolicy treats node traffic (`hostNetwork` pods, a pod's own node).
    pub node_traffic: NodeTraffic,
    /// The external authorizers CUSTOM policies name (meshConfig `extensionProviders`).
    pub extension_providers: Vec<extauthz::ExtensionProvider>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            path_normalization: PathNormalization::Base,
            node_traffic: NodeTraffic::default(),
            extension_providers: Vec::new(),
        }
    }
}
