#![doc = include_str!("../../docs/container-policy.md")]
//!
//! # Example: deciding a container start
//!
//! ```
//! use palisade_engine::{load, SourceFile};
//! use palisade_engine::container::{decide_container, ContainerRequest};
//!
//! let set = load(&[SourceFile::new("p.yaml", r#"
//! apiVersion: palisade.dev/v1alpha1
//! kind: ContainerPolicy
//! metadata: {name: baseline}
//! spec:
//!   images: {deniedTags: [latest]}
//!   privileges: {level: baseline}
//! "#)]).unwrap();
//! let req: ContainerRequest = serde_json::from_str(r#"{
//!   "state": {"ociVersion": "1.0.2", "id": "c1", "status": "creating", "bundle": "/b",
//!             "annotations": {"io.kubernetes.cri.image-name": "nginx",
//!                             "io.kubernetes.cri.sandbox-namespace": "shop"}},
//!   "config": {"process": {"user": {"uid": 0},
//!                          "capabilities": {"bounding": ["CAP_SYS_ADMIN"]}},
//!              "linux": {"namespaces": [{"type": "network"}, {"type": "ipc"}],
//!                        "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}}
//! }"#).unwrap();
//! let d = decide_container(&set.container, &set.inventory, &req).unwrap();
//! assert!(!d.allowed);
//! let controls: Vec<&str> = d.violations.iter().map(|v| v.control.as_str()).collect();
//! // No AppArmor profile, two token masks instead of the runtime's sets, no device rules.
//! assert_eq!(
//!     controls,
//!     ["image.deniedTag", "capabilities", "hostPID", "appArmor", "procMount", "devices"]
//! );
//! assert_eq!(d.violations[0].policy, "default/baseline");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pattern::{Glob, GlobPart};
use crate::selector::LabelSelector;

mod checks;
mod decide;
pub mod host;
mod image;
mod parse;
pub mod read;
mod request;
#[cfg(test)]
mod tests;

pub use checks::{DEFAULT_DEVICES, DevicePattern, PROC_PRESETS, ProcPaths};
pub use decide::{ContainerDecision, Subject, decide_container};
pub use image::ImageRef;
pub use parse::parse;
pub use request::{
    ContainerRequest, ImageInfo, OciCapabilities, OciConfig, OciDevice, OciDeviceCgroup,
    OciIdMapping, OciLinux, OciMount, OciNamespace, OciProcess, OciResources, OciRoot, OciState,
    OciUser, PodInfo, annotations,
};

// ----------------------------------------------------------------------------------------
// The policy
// ----------------------------------------------------------------------------------------

/// A `ContainerPolicy`, validated and resolved: the level's defaults are folded into each
/// control, so deciding never looks at the level again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent); names the policy only.
    pub namespace: String,
    /// `spec.selector`: the containers the policy applies to.
    pub selector: Selector,
    /// `spec.images`.
    pub images: ImageRules,
    /// `spec.privileges`, resolved.
    pub privileges: Privileges,
    /// `file:line` of the document.
    pub origin: String,
}

impl ContainerPolicy {
    /// `<namespace>/<name>`, as decisions name the policy.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Which containers a policy applies to: `namespaces` (when non-empty) AND `labels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// The pod's namespace is one of these; empty: any namespace.
    pub namespaces: Vec<String>,
    /// `matchLabels` AND `matchExpressions` on the pod's labels; empty: any labels.
    pub labels: LabelSelector,
}

/// Image rules; each is a separate control, every one is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRules {
    /// `allowedRegistries`, ORed; `None`: any registry.
    pub allowed_registries: Option<Vec<Pattern>>,
    /// `allowedRepositories`, ORed, on `registry/repository`; `None`: any.
    pub allowed_repositories: Option<Vec<Pattern>>,
    /// `requireDigest`: the reference must carry `@<digest>`.
    pub require_digest: bool,
    /// `deniedTags`: the tag (written or the implicit `latest`) may not be one of these.
    pub denied_tags: Vec<String>,
    /// `digestsByIdentity`: every entry that applies must list the image's digest.
    pub digests_by_identity: Vec<IdentityDigests>,
    /// `provenance`: a verified statement from the pipeline must name the image's digest.
    pub provenance: Option<crate::provenance::ProvenanceRule>,
}

impl ImageRules {
    fn is_empty(&self) -> bool {
        self.allowed_registries.is_none()
            && self.allowed_repositories.is_none()
            && !self.require_digest
            && self.denied_tags.is_empty()
            && self.digests_by_identity.is_empty()
            && self.provenance.is_none()
    }
}

/// A glob as written and compiled (`*`: no `/`; `**`: anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pattern {
    /// As written.
    pub text: String,
    /// Compiled.
    pub glob: Glob,
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '*' {
                if !lit.is_empty() {
                    parts.push(GlobPart::Lit(std::mem::take(&mut lit)));
                }
                if let Some(r) = rest.strip_prefix("**") {
                    parts.push(GlobPart::Star);
                    rest = r;
                } else {
                    parts.push(GlobPart::NoSlash);
                    rest = rest.get(1..).unwrap_or("");
                }
            } else {
                lit.push(c);
                rest = rest.get(c.len_utf8()..).unwrap_or("");
            }
        }
        if !lit.is_empty() {
            parts.push(GlobPart::Lit(lit));
        }
        Pattern {
            text: text.to_string(),
            glob: Glob(parts),
        }
    }

    fn matches(&self, v: &str) -> bool {
        self.glob.matches(v)
    }
}

/// One `digestsByIdentity` entry: containers running as this identity may only run these
/// digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDigests {
    /// The pod's namespace.
    pub namespace: String,
    /// Who, in that namespace.
    pub who: IdentityKey,
    /// Allowed digests (`sha256:<64 hex>`), ORed.
    pub digests: Vec<String>,
}

/// How a `digestsByIdentity` entry names the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityKey {
    /// `serviceAccount`.
    ServiceAccount(String),
    /// `matchLabels`: every pair present on the pod.
    Labels(Vec<(String, String)>),
}

impl fmt::Display for IdentityDigests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.who {
            IdentityKey::ServiceAccount(sa) => {
                write!(f, "service account `{}/{sa}`", self.namespace)
            }
            IdentityKey::Labels(l) => {
                let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(
                    f,
                    "workloads `{}` in namespace `{}`",
                    pairs.join(","),
                    self.namespace
                )
            }
        }
    }
}

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// Nothing checked but the controls written out.
    #[default]
    Privileged,
    /// PSS baseline.
    Baseline,
    /// PSS restricted.
    Restricted,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// What `appArmor` accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AppArmor {
    /// Anything.
    #[default]
    Any,
    /// Not `unconfined`; an absent profile passes (for nodes without AppArmor, where no
    /// runtime writes one).
    NotUnconfined,
    /// A profile other than `unconfined` must be set: absent is how containerd writes
    /// Unconfined (the level default).
    Required,
}

/// What `procMount` accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcMount {
    /// Masked and read-only `/proc` paths required.
    Default,
    /// Anything.
    #[default]
    Unmasked,
}

/// One `allowedHostPaths` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPath {
    /// Allowed sources: this path and everything below it.
    pub path_prefix: String,
    /// The mount must be read-only (`ro` option).
    pub read_only: bool,
}

/// The privilege controls, with the level's defaults applied. `None` / `false` / `Any` /
/// `Unmasked`: not checked; host namespace fields say whether they are allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    /// The level named (for messages).
    pub level: Level,
    /// Capabilities the container may hold, without `CAP_`.
    pub allowed_capabilities: Option<Vec<String>>,
    /// The host network namespace is allowed.
    pub host_network: bool,
    /// The host PID namespace is allowed.
    pub host_pid: bool,
    /// The host IPC namespace is allowed.
    pub host_ipc: bool,
    /// Host bind mounts allowed; `None`: any.
    pub allowed_host_paths: Option<Vec<HostPath>>,
    /// uid 0 (on the host) forbidden.
    pub run_as_non_root: bool,
    /// `process.noNewPrivileges` required.
    pub no_new_privileges: bool,
    /// `linux.seccomp` required.
    pub seccomp_required: bool,
    /// `root.readonly` required.
    pub read_only_root_filesystem: bool,
    /// Sysctl names allowed (`prefix*` allowed); `None`: any.
    pub allowed_sysctls: Option<Vec<String>>,
    /// AppArmor.
    pub app_armor: AppArmor,
    /// SELinux types allowed; `None`: any.
    pub selinux_types: Option<Vec<String>>,
    /// SELinux users allowed; `None`: any.
    pub selinux_users: Option<Vec<String>>,
    /// SELinux roles allowed; `None`: any.
    pub selinux_roles: Option<Vec<String>>,
    /// `/proc` masking.
    pub proc_mount: ProcMount,
    /// The masked and read-only paths `procMount: Default` requires.
    pub proc_paths: ProcPaths,
    /// Devices the container may read and write; `None`: any.
    pub allowed_devices: Option<Vec<DevicePattern>>,
}

impl Default for Privileges {
    fn default() -> Self {
        Privileges::for_level(Level::Privileged)
    }
}

/// PSS baseline's allowed added capabilities, plus `NET_RAW` from the runtimes' default set.
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// PSS's safe sysctls: pod-security-admission `policy/check_sysctls.go`
/// (`sysctls_allowed_1_32`: 1.0's five, `ip_local_reserved_ports` from 1.27, the TCP
/// keepalive and FIN timeouts from 1.29, `tcp_rmem`/`tcp_wmem` from 1.32), the same list as
/// the Kubernetes documentation's "Using sysctls in a Kubernetes Cluster" safe set.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_wmem",
];

/// The SELinux user and role every runtime writes for a container (container-selinux's
/// `lxc_contexts`): PSS forbids the pod to set others.
const DEFAULT_SELINUX_USERS: &[&str] = &["system_u"];
const DEFAULT_SELINUX_ROLES: &[&str] = &["system_r"];

/// PSS baseline's SELinux types.
const BASELINE_SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Every Linux capability, without `CAP_`.
const KNOWN_CAPS: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

impl Privileges {
    /// The controls a level sets.
    pub fn for_level(level: Level) -> Privileges {
        let base = level != Level::Privileged;
        let restricted = level == Level::Restricted;
        Privileges {
            level,
            allowed_capabilities: match level {
                Level::Privileged => None,
                Level::Baseline => Some(owned(BASELINE_CAPS)),
                Level::Restricted => Some(owned(&["NET_BIND_SERVICE"])),
            },
            host_network: !base,
            host_pid: !base,
            host_ipc: !base,
            allowed_host_paths: base.then(Vec::new),
            run_as_non_root: restricted,
            no_new_privileges: restricted,
            seccomp_required: restricted,
            read_only_root_filesystem: false,
            allowed_sysctls: base.then(|| owned(SAFE_SYSCTLS)),
            app_armor: if base {
                AppArmor::Required
            } else {
                AppArmor::Any
            },
            selinux_types: base.then(|| owned(BASELINE_SELINUX_TYPES)),
            selinux_users: base.then(|| owned(DEFAULT_SELINUX_USERS)),
            selinux_roles: base.then(|| owned(DEFAULT_SELINUX_ROLES)),
            proc_mount: if base {
                ProcMount::Default
            } else {
                ProcMount::Unmasked
            },
            proc_paths: ProcPaths::common(),
            allowed_devices: base.then(|| {
                DEFAULT_DEVICES
                    .iter()
                    .filter_map(|d| DevicePattern::parse(d))
                    .collect()
            }),
        }
    }
}

/// One violated control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The control: `capabilities`, `hostPID`, `image.deniedTag`, …
    pub control: String,
    /// The policy, `ns/name`.
    pub policy: String,
    /// What was found and what is allowed.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]: {}", self.policy, self.control, self.message)
    }
}

/// Where the checks of one policy report their violations.
pub(crate) struct Report<'a> {
    pub(crate) policy: &'a str,
    pub(crate) violations: &'a mut Vec<Violation>,
}

impl Report<'_> {
    pub(crate) fn add(&mut self, control: &str, message: String) {
        self.violations.push(Violation {
            control: control.to_string(),
            policy: self.policy.to_string(),
            message,
        });
    }
}

/// Items for a message: each in backticks, comma-separated; `none` when empty.
pub(crate) fn ticks<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CAP_SYS_ADMIN`, `sys_admin` → `SYS_ADMIN`.
pub(crate) fn cap_name(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
}
