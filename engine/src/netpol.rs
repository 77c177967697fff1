//! Kubernetes `NetworkPolicy` (`networking.k8s.io/v1`). (Being written.)

use serde::{Deserialize, Serialize};

use crate::authz::Origin;
use crate::decision::NetworkOutcome;
use crate::diag::Errors;
use crate::inventory::Inventory;
use crate::request::Request;
use crate::yaml::{DResult, Fields};

/// A NetworkPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// Where it came from.
    pub origin: Origin,
}

/// NetworkPolicies compiled for decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledNetwork {}

impl CompiledNetwork {
    /// Whether there are no NetworkPolicies (then they never restrict anything).
    pub fn is_empty(&self) -> bool {
        true
    }
}

/// Reads a NetworkPolicy's `spec`.
pub fn parse(
    mut top: Fields<'_>,
    name: String,
    namespace: String,
    origin: Origin,
) -> DResult<NetworkPolicy> {
    top.take("spec");
    top.finish(&["apiVersion", "kind", "metadata", "spec"])?;
    Ok(NetworkPolicy {
        name,
        namespace,
        origin,
    })
}

/// Compiles NetworkPolicies against the inventory.
pub fn compile(
    _policies: &[NetworkPolicy],
    _inventory: &Inventory,
) -> Result<CompiledNetwork, Errors> {
    Ok(CompiledNetwork {})
}

/// Evaluates a connection: allowed only if the source's egress and the destination's
/// ingress both allow it.
pub fn evaluate(
    _net: &CompiledNetwork,
    _inventory: &Inventory,
    _req: &Request,
) -> Result<NetworkOutcome, String> {
    Err("NetworkPolicy evaluation is not built yet".into())
}
