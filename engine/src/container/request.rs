//! The request: a container about to start, as an OCI hook reads it (state and
//! `config.json`) plus what a host may know besides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::host::HostFacts;
use crate::error::ContainerError;

/// bundle) plus what a host may know besides. JSON, camelCase; unknown fields are ignored
/// everywhere, as runc's and crun's extras must be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRequest {
    /// The OCI runtime state.
    pub state: OciState,
    /// The bundle's `config.json` (the fields decisions use).
    pub config: OciConfig,
    /// More annotations, applied over `config.annotations` and `state.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The pod, when the host knows it (NRI's `PodSandbox`); first over annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodInfo>,
    /// The image, when the host knows it; first over annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
    /// What the host established about this start (namespace identities, resolved mount
    /// sources, the pod sandbox); without it the engine judges by spelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostFacts>,
}

impl ContainerRequest {
    /// A request from the two documents an OCI hook has: the state JSON and `config.json`.
    /// `config.json` is read as every runtime would read it, or refused
    /// ([`crate::container::read`]).
    pub fn from_oci(state: &str, config: &str) -> Result<ContainerRequest, ContainerError> {
        Ok(ContainerRequest {
            state: serde_json::from_str(state)
                .map_err(|e| ContainerError::BadState(e.to_string()))?,
            config: crate::container::read::read_config(config)?,
            ..ContainerRequest::default()
        })
    }
}

/// The OCI state (runtime-spec `runtime.md`), read tolerantly: `status` is any string
/// (crun says `starting`), `pid` may be 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// `ociVersion`.
    #[serde(default)]
    pub oci_version: String,
    /// The container id (required).
    pub id: String,
    /// `creating`, `created`, `starting`, `running`, `stopped`.
    #[serde(default)]
    pub status: String,
    /// The process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// The bundle path.
    #[serde(default)]
    pub bundle: String,
    /// Annotations (copied from `config.json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of `config.json` decisions use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OciConfig {
    /// `process`.
    pub process: Option<OciProcess>,
    /// `root`.
    pub root: Option<OciRoot>,
    /// `mounts`.
    pub mounts: Vec<OciMount>,
    /// `linux`.
    pub linux: Option<OciLinux>,
    /// `annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// `process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OciProcess {
    /// `user`.
    pub user: Option<OciUser>,
    /// `args` (a sandbox runs `/pause`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `capabilities`.
    pub capabilities: Option<OciCapabilities>,
    /// `noNewPrivileges`.
    pub no_new_privileges: Option<bool>,
    /// `apparmorProfile`.
    pub apparmor_profile: Option<String>,
    /// `selinuxLabel`.
    pub selinux_label: Option<String>,
}

/// `process.user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciUser {
    /// `uid`.
    pub uid: u32,
    /// `gid`.
    pub gid: u32,
}

/// `process.capabilities`: names such as `CAP_NET_BIND_SERVICE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciCapabilities {
    /// `bounding`.
    pub bounding: Vec<String>,
    /// `effective`.
    pub effective: Vec<String>,
    /// `permitted`.
    pub permitted: Vec<String>,
    /// `inheritable`.
    pub inheritable: Vec<String>,
    /// `ambient`.
    pub ambient: Vec<String>,
}

/// `root`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciRoot {
    /// `path`.
    pub path: String,
    /// `readonly`.
    pub readonly: bool,
}

/// One `mounts` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciMount {
    /// `destination`.
    pub destination: String,
    /// `type`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `source`.
    pub source: Option<String>,
    /// `options`.
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OciLinux {
    /// `namespaces`.
    pub namespaces: Vec<OciNamespace>,
    /// `uidMappings`.
    pub uid_mappings: Vec<OciIdMapping>,
    /// `sysctl`.
    pub sysctl: BTreeMap<String, String>,
    /// `seccomp`, kept as written (its content is judged by `seccompRequired`).
    pub seccomp: Option<serde_json::Value>,
    /// `maskedPaths`.
    pub masked_paths: Vec<String>,
    /// `readonlyPaths`.
    pub readonly_paths: Vec<String>,
    /// `devices`: device nodes created in the container.
    pub devices: Vec<OciDevice>,
    /// `resources` (only the device cgroup rules are read).
    pub resources: Option<OciResources>,
}

/// One `linux.devices` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciDevice {
    /// `path` in the container.
    pub path: String,
    /// `type`: `c`, `b`, `u`, `p`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `major`.
    pub major: i64,
    /// `minor`.
    pub minor: i64,
}

/// `linux.resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciResources {
    /// `devices`: the device cgroup rules, in order.
    pub devices: Vec<OciDeviceCgroup>,
}

/// One `linux.resources.devices` rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciDeviceCgroup {
    /// `allow`.
    pub allow: bool,
    /// `type`: `a` (all, also when absent), `b`, `c`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `major`; absent or negative: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// `minor`; absent or negative: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// `access`: some of `r`, `w`, `m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

/// One `linux.namespaces` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciNamespace {
    /// `type`: `pid`, `network`, `ipc`, `uts`, `mount`, `user`, `cgroup`, `time`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `path`: join this namespace instead of creating one.
    pub path: Option<String>,
}

/// One `linux.uidMappings` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciIdMapping {
    /// `containerID`.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// `hostID`.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// `size`.
    pub size: u32,
}

/// The pod as a host knows it (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: Option<String>,
    /// Pod name.
    pub name: Option<String>,
    /// Pod uid.
    pub uid: Option<String>,
    /// Pod labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Service account.
    pub service_account: Option<String>,
}

/// The image as a host knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageInfo {
    /// The reference.
    pub name: Option<String>,
    /// The resolved manifest digest, used by `digestsByIdentity` when the reference has none.
    pub digest: Option<String>,
}

/// Annotation keys read.
pub mod annotations {
    /// containerd: pod namespace.
    pub const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// containerd: pod name.
    pub const CRI_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// containerd: pod uid.
    pub const CRI_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// containerd: sandbox id.
    pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// containerd: container name.
    pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// containerd: image reference.
    pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    /// containerd: `sandbox` or `container`.
    pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// CRI-O: pod namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// CRI-O: pod name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// CRI-O: pod uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// CRI-O: container name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// CRI-O: image reference as the user wrote it.
    pub const CRIO_IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";
    /// CRI-O: labels (JSON object).
    pub const CRIO_LABELS: &str = "io.kubernetes.cri-o.Labels";
    /// CRI-O: `sandbox` or `container`.
    pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
    /// CRI-O: sandbox id.
    pub const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";
    /// Palisade: pod labels (JSON object), the last resort.
    pub const PALISADE_LABELS: &str = "palisade.dev/labels";
    /// Palisade: service account, the last resort.
    pub const PALISADE_SERVICE_ACCOUNT: &str = "palisade.dev/service-account";
}

// ----------------------------------------------------------------------------------------
