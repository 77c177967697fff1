//! Palisade's inventory from real sources: the workloads, addresses and labels that the
//! orchestrator and the container runtime already report.
//!
//! - [`kubernetes`]: Kubernetes objects as `kubectl get ... -o json|yaml` prints them, read
//!   into [`kubernetes::Objects`], named as Istio names workloads (`WORKLOAD_NAME`).
//! - [`containers`]: `podman inspect` / `docker inspect` (and `podman ps --format json`).
//!
//! Every source produces [`Member`]s (one pod or container each); [`build`] groups them into
//! the engine's [`Inventory`] workloads, and reports what it could not map ([`Import`]).

pub mod containers;
pub mod document;
pub mod kubernetes;
mod members;
#[cfg(feature = "watch")]
pub mod watch;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;

use palisade_engine::inventory::Inventory;
use serde::Serialize;

pub use crate::members::{Member, build};

/// An object a source read: its kind, namespace (empty for cluster-scoped objects and
/// containers without one) and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// `Pod`, `Namespace`, `Container`, ...
    pub kind: String,
    /// The namespace, when the object has one.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// An object by kind, namespace and name.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (_, true) => write!(f, "{} (unnamed)", self.kind),
            (true, false) => write!(f, "{} {}", self.kind, self.name),
            (false, false) => write!(f, "{} {}/{}", self.kind, self.namespace, self.name),
        }
    }
}

/// Something a source read and could not map, or mapped only in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The object.
    pub object: ObjectRef,
    /// Why, in one sentence.
    pub reason: String,
}

impl Finding {
    /// A finding about `object`.
    pub fn new(object: ObjectRef, reason: impl Into<String>) -> Self {
        Finding {
            object,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.reason)
    }
}

/// A container image a workload runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The container's name in its pod (empty for a host container).
    pub container: String,
    /// The image as the workload names it (`nginx:1.27`).
    pub image: String,
    /// The registry digest (`sha256:...`) the runtime resolved it to, when it reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The images of one inventory workload. Kept beside the [`Inventory`], not in it: the
/// engine's `Workload` is part of the compiled bundle's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadImages {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name.
    pub name: String,
    /// Its images, sorted, without repeats.
    pub images: Vec<Image>,
}

/// What an import produced: the inventory, the images beside it, and every object that was
/// not mapped (`unmapped`) or mapped with something left out (`notes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Import {
    /// The inventory.
    pub inventory: Inventory,
    /// Each workload's images (workloads without any are left out).
    pub images: Vec<WorkloadImages>,
    /// Objects that contributed nothing, each with the reason.
    pub unmapped: Vec<Finding>,
    /// Objects that contributed, with something left out or guessed, each with the reason.
    pub notes: Vec<Finding>,
    /// How many objects of each kind were read.
    pub counts: BTreeMap<String, usize>,
}
