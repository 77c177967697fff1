//! `ContainerPolicy` (`palisade.dev/v1alpha1`): which containers may start, from which
//! images, with which privileges and as which identity — decided at the container runtime
//! (an OCI hook, an NRI plugin) from the OCI state, the bundle's `config.json` and the
//! orchestrator's annotations.
//!
//! # The document
//!
//! ```yaml
//! apiVersion: palisade.dev/v1alpha1
//! kind: ContainerPolicy
//! metadata:
//!   name: payments-restricted
//!   namespace: payments            # names the policy (`payments/payments-restricted`); default `default`
//! spec:
//!   selector:                      # ANDed; empty or absent: every container
//!     namespaces: [payments]       # the pod's namespace is one of these
//!     matchLabels: {app: processor}
//!     matchExpressions:
//!     - {key: tier, operator: In, values: [backend]}
//!   images:                        # each field is its own control, all checked
//!     allowedRegistries: [registry.example.com, "*.gcr.io"]
//!     allowedRepositories: ["registry.example.com/payments/*"]
//!     requireDigest: true          # the reference must be pinned, `name@sha256:…`
//!     deniedTags: [latest]         # an untagged, unpinned reference is `:latest`
//!     digestsByIdentity:           # only images built by our pipeline may run as…
//!     - namespace: payments
//!       serviceAccount: processor  # …or `matchLabels: {app: processor}`
//!       digests: ["sha256:4b1c…(64 hex digits)"]
//!   privileges:
//!     level: restricted            # privileged (default) | baseline | restricted
//!     # each control below overrides what the level says
//!     allowedCapabilities: [NET_BIND_SERVICE]
//!     hostNetwork: false           # true: allowed
//!     hostPID: false
//!     hostIPC: false
//!     allowedHostPaths:
//!     - {pathPrefix: /var/log/payments, readOnly: true}
//!     runAsNonRoot: true           # true: uid 0 forbidden
//!     noNewPrivileges: true        # true: required
//!     seccompRequired: true
//!     readOnlyRootFilesystem: true
//!     allowedSysctls: [net.ipv4.tcp_keepalive_time, "net.ipv4.tcp_*"]
//!     appArmor: required           # any | notUnconfined | required
//!     selinux: {allowedTypes: [container_t], allowedUsers: [system_u], allowedRoles: [system_r]}
//!     procMount: Default           # Default (the runtime's masked /proc required) | Unmasked
//!     procMountPaths: common       # common | runc | crun | kubelet | containerd | podman | {masked, readOnly}
//!     allowedDevices: ["c 10:229"] # devices readable/writable besides none (level: the runtimes' defaults)
//! ```
//!
//! Globs: in `allowedRegistries` and `allowedRepositories`, `*` matches any run of characters
//! except `/` and `**` any run including `/`; the rest is literal. Registries are matched
//! against the reference's registry host (`docker.io`, `registry.example.com:5000`),
//! repositories against the normalised `registry/repository` without tag or digest
//! (`docker.io/library/nginx`).
//!
//! # Levels (Kubernetes Pod Security Standards, as `config.json` shows them)
//!
//! | control | `baseline` | `restricted` |
//! |---|---|---|
//! | `allowedCapabilities` | PSS baseline's add-list plus `NET_RAW` (in the runtimes' default set, which PSS does not count as added) | `NET_BIND_SERVICE` only ("drop ALL") |
//! | `hostNetwork` / `hostPID` / `hostIPC` | forbidden | forbidden |
//! | `allowedHostPaths` | none | none |
//! | `runAsNonRoot` | — | required |
//! | `noNewPrivileges` | — | required |
//! | `seccompRequired` | — (an unset profile and `Unconfined` look alike in `config.json`) | a filtering profile |
//! | `allowedSysctls` | PSS's safe set (sandboxes too) | PSS's safe set |
//! | `appArmor` | `required` (absent is containerd's Unconfined) | `required` |
//! | `selinux` | types `container_t`, `container_init_t`, `container_kvm_t`, `container_engine_t`; user `system_u`, role `system_r` | same |
//! | `procMount` | `Default`: the `common` masked and read-only sets, one `proc` at `/proc`, `sysfs` read-only | same |
//! | `allowedDevices` | the runtimes' default devices (null, zero, full, random, urandom, tty, console, ptmx, pts, tun) | same |
//!
//! Capabilities are what the container can hold: the union of the five sets in
//! `process.capabilities`. There is no `privileged` flag in `config.json`; a privileged
//! container fails `allowedCapabilities`, `procMount` and (at restricted) `seccompRequired`.
//! `readOnlyRootFilesystem` is not part of PSS and only checked when set.
//!
//! # Evidence in `config.json`
//!
//! * `config.json` is read as every runtime would read it, or refused
//!   ([`crate::container_read`]: case-folded and duplicate keys).
//! * Host namespaces: a `network`/`pid`/`ipc` namespace is the host's when its type is absent
//!   from `linux.namespaces` (the runtime does not create one: the container shares the
//!   runtime's, which is how runc, containerd and CRI-O encode `hostNetwork`, `hostPID`,
//!   `hostIPC`), or when its `path` names the host's namespace: by device and inode with
//!   the host's facts, by spelling without ([`crate::container_host::namespace_is_host`]).
//! * Host paths: every mount's effective source — bind sources resolved as the runtime does,
//!   any filesystem that is not a pseudo-filesystem, overlay directories — and `root.path`,
//!   unless it is the runtime's own for this container (its bundle's layout, a named volume,
//!   its proven pod sandbox), never by annotation or container id
//!   ([`crate::container_host::host_paths`]). A `pathPrefix` matches whole path components
//!   (`/var/log` matches `/var/log/app`, not `/var/logs`).
//! * Root: `process.user.uid` 0 (absent `user`: 0); in a user namespace, the uid is first
//!   mapped through `linux.uidMappings` to the host uid.
//! * `/proc` and `/sys` (`procMount: Default`): every path of the `procMountPaths` sets must
//!   be in `linux.maskedPaths` (or `linux.readonlyPaths` for the read-only set; a listed
//!   ancestor covers), no `proc` mount but the one at `/proc`, `sysfs` only with `ro`, no
//!   host kernel filesystem (`securityfs`, `debugfs`, …: control `kernelMounts`). Exempt: a
//!   user namespace the runtime creates whose `linux.uidMappings` map nothing to host uid 0
//!   (PSS `hostUsers: false`); an identity mapping is host root.
//! * Devices: the cgroup rules of `linux.resources.devices` (in order, the last match wins,
//!   from a start that allows everything) must grant read or write only on `allowedDevices`,
//!   and `linux.devices` must pass in no other node.
//! * Seccomp (`seccompRequired`): `linux.seccomp` with a blocking `defaultAction`
//!   (`SCMP_ACT_ERRNO`, `…_KILL*`, `…_TRAP`) and no rule letting through unconditionally a
//!   syscall no runtime default allows (`mount`, `unshare`, `bpf`, `kexec_load`, …). `{}`,
//!   `SCMP_ACT_ALLOW` or `SCMP_ACT_LOG` as the default filter nothing.
//! * AppArmor: `process.apparmorProfile` `unconfined`, or (with `required`) absent — how
//!   containerd writes Unconfined. SELinux: the user, role and type of
//!   `process.selinuxLabel`; no label passes.
//!
//! # Identity and images, from the annotations
//!
//! The pod's namespace, name and uid, the container name and type and the image reference
//! come from containerd's `io.kubernetes.cri.*` or CRI-O's `io.kubernetes.pod.*` /
//! `io.kubernetes.cri-o.*` annotations (the request's `pod` and `image`, when a host such
//! as NRI knows them, come first). Pod labels are taken from the first source that has them:
//! `pod.labels`, CRI-O's `io.kubernetes.cri-o.Labels` (JSON), the inventory workload named
//! by namespace and pod name, then the `palisade.dev/labels` annotation (JSON). The service
//! account: `pod.serviceAccount`, the inventory workload, then
//! `palisade.dev/service-account`. Annotations are written by whoever writes the pod, so
//! prefer the inventory; an identity that cannot be told is never assumed (a
//! `digestsByIdentity` entry keyed by service account reports a violation when the service
//! account is unknown in its namespace).
//!
//! Image references are normalised as Docker and containerd do: registry `docker.io` when
//! the first component is not a host (no `.` or `:` and not `localhost`), `library/` before
//! single-name Docker Hub images, `index.docker.io` read as `docker.io`, tag `latest` when
//! neither tag nor digest is given. The parser is written here (the `oci-spec` crate's
//! `Reference` would bring `regex`, `derive_builder`, `getset` and `strum` into every wasm
//! artifact for ~100 lines of logic). `deniedTags` does not apply to digest-pinned
//! references: the digest, not the tag, says what runs.
//!
//! # The decision
//!
//! Every selected policy is evaluated and every violated control of each is reported, one
//! [`Violation`] per control and policy naming all offending values; the container may start
//! iff there is none. No selected policy: allowed (as Kubernetes admits a pod no policy
//! governs). Sandbox (pause) containers are checked like any other (their host namespaces
//! and privileges are the pod's); only the image rules are skipped for a sandbox that runs
//! `/pause`, whose image is the runtime's configuration. A request that cannot be read (a
//! malformed labels annotation, a `config.json` runtimes would read differently) is an
//! `Err`, which every host turns into a deny.
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

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compile::Engine;
use crate::container_host::{HostFacts, Storage, host_paths, namespace_is_host};
use crate::inventory::Inventory;
use crate::netpol::{LabelSelector, parse_requirement};
use crate::pattern::{Glob, GlobPart};
use crate::yaml::{At, DResult, Fields, Str};

mod checks;

pub use checks::{DEFAULT_DEVICES, DevicePattern, PROC_PRESETS, ProcPaths};

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

// ----------------------------------------------------------------------------------------
// Reading
// ----------------------------------------------------------------------------------------

/// Reads a ContainerPolicy's `spec` (the caller has taken `apiVersion`, `kind`, `metadata`).
pub fn parse(
    mut top: Fields<'_>,
    name: String,
    namespace: String,
    origin: String,
) -> DResult<ContainerPolicy> {
    let spec = top.require("spec")?;
    top.finish(&["apiVersion", "kind", "metadata", "spec"])?;
    let at = spec.at();
    let mut f = at.fields()?;
    let selector = f.take("selector");
    let images = f.take("images");
    let privileges = f.take("privileges");
    f.finish(&["selector", "images", "privileges"])?;
    Ok(ContainerPolicy {
        name,
        namespace,
        selector: match &selector {
            Some(s) => parse_selector(s.at())?,
            None => Selector::default(),
        },
        images: match &images {
            Some(i) => parse_images(i.at())?,
            None => ImageRules::default(),
        },
        privileges: match &privileges {
            Some(p) => parse_privileges(p.at())?,
            None => Privileges::default(),
        },
        origin,
    })
}

fn parse_selector(at: At<'_>) -> DResult<Selector> {
    let mut f = at.fields()?;
    let namespaces = f.take("namespaces");
    let labels = f.take("matchLabels");
    let expressions = f.take("matchExpressions");
    f.finish(&["namespaces", "matchLabels", "matchExpressions"])?;
    let mut sel = Selector::default();
    if let Some(n) = &namespaces {
        for s in n.at().strings()? {
            if s.value.is_empty() {
                return Err(s.error("namespace must not be empty"));
            }
            sel.namespaces.push(s.value);
        }
    }
    if let Some(l) = &labels {
        sel.labels.match_labels = l.at().string_map()?;
    }
    if let Some(e) = &expressions {
        for (item, path) in e.at().items()? {
            sel.labels
                .match_expressions
                .push(parse_requirement(item.with_path(&path))?);
        }
    }
    Ok(sel)
}

fn parse_images(at: At<'_>) -> DResult<ImageRules> {
    let mut f = at.fields()?;
    let registries = f.take("allowedRegistries");
    let repositories = f.take("allowedRepositories");
    let digest = f.take("requireDigest");
    let tags = f.take("deniedTags");
    let by_identity = f.take("digestsByIdentity");
    let provenance = f.take("provenance");
    f.finish(&[
        "allowedRegistries",
        "allowedRepositories",
        "requireDigest",
        "deniedTags",
        "digestsByIdentity",
        "provenance",
    ])?;
    let mut rules = ImageRules::default();
    if let Some(r) = &registries {
        let mut list = Vec::new();
        for s in r.at().strings()? {
            check_glob(&s)?;
            if s.value.contains('/') {
                return Err(s
                    .error(format!("registry `{}` contains `/`", s.value))
                    .with_help("list repositories under `allowedRepositories`"));
            }
            list.push(Pattern::new(&s.value.to_ascii_lowercase()));
        }
        rules.allowed_registries = Some(list);
    }
    if let Some(r) = &repositories {
        let mut list = Vec::new();
        for s in r.at().strings()? {
            check_glob(&s)?;
            let last = s.value.rsplit('/').next().unwrap_or("");
            if !s.value.contains('/') {
                return Err(s
                    .error(format!("repository `{}` has no registry", s.value))
                    .with_help("write the registry too, e.g. `docker.io/library/nginx` or `registry.example.com/shop/*`"));
            }
            if last.contains(':') || s.value.contains('@') {
                return Err(s
                    .error(format!("repository `{}` has a tag or digest", s.value))
                    .with_help("write the repository alone; use `deniedTags` or `requireDigest` for tags and digests"));
            }
            list.push(Pattern::new(&s.value));
        }
        rules.allowed_repositories = Some(list);
    }
    if let Some(d) = &digest {
        rules.require_digest = d.at().boolean()?;
    }
    if let Some(t) = &tags {
        for s in t.at().strings()? {
            if !valid_tag(&s.value) {
                return Err(s.error(format!("invalid tag `{}`", s.value)).with_help(
                    "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
                ));
            }
            rules.denied_tags.push(s.value);
        }
    }
    if let Some(b) = &by_identity {
        for (item, path) in b.at().items()? {
            rules
                .digests_by_identity
                .push(parse_identity_digests(item.with_path(&path))?);
        }
    }
    if let Some(p) = &provenance {
        rules.provenance = Some(crate::provenance::parse_rule(p.at())?);
    }
    Ok(rules)
}

fn check_glob(s: &Str) -> DResult<()> {
    if s.value.is_empty() {
        return Err(s.error("pattern must not be empty"));
    }
    if s.value.contains("***") {
        return Err(s
            .error(format!("pattern `{}` has `***`", s.value))
            .with_help("`*` matches within a path component, `**` across components"));
    }
    if let Some(c) = s
        .value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(s.error(format!("pattern `{}` contains {c:?}", s.value)));
    }
    Ok(())
}

fn parse_identity_digests(at: At<'_>) -> DResult<IdentityDigests> {
    let mut f = at.fields()?;
    let ns_f = f.require("namespace")?;
    let sa_f = f.take("serviceAccount");
    let labels_f = f.take("matchLabels");
    let digests_f = f.require("digests")?;
    f.finish(&["namespace", "serviceAccount", "matchLabels", "digests"])?;
    let namespace = ns_f.at().string()?;
    if namespace.is_empty() {
        return Err(ns_f.at().error("namespace must not be empty"));
    }
    let who = match (&sa_f, &labels_f) {
        (Some(sa), None) => {
            let sa_name = sa.at().string()?;
            if sa_name.is_empty() {
                return Err(sa.at().error("service account must not be empty"));
            }
            IdentityKey::ServiceAccount(sa_name)
        }
        (None, Some(l)) => {
            let labels = l.at().string_map()?;
            if labels.is_empty() {
                return Err(l
                    .at()
                    .error("`matchLabels` must name at least one label")
                    .with_help("an entry for a whole namespace would be written with every workload's labels; list them"));
            }
            IdentityKey::Labels(labels)
        }
        _ => {
            return Err(
                at.error("an identity needs exactly one of `serviceAccount` and `matchLabels`")
            );
        }
    };
    let mut digests = Vec::new();
    for s in digests_f.at().strings()? {
        if !valid_digest(&s.value) {
            return Err(s
                .error(format!("invalid digest `{}`", s.value))
                .with_help("write `sha256:` and 64 lower-case hex digits"));
        }
        digests.push(s.value);
    }
    if digests.is_empty() {
        return Err(digests_f
            .at()
            .error("`digests` is empty: no image could run as this identity")
            .with_help("list the digests your pipeline built"));
    }
    Ok(IdentityDigests {
        namespace,
        who,
        digests,
    })
}

fn parse_privileges(at: At<'_>) -> DResult<Privileges> {
    const KNOWN: &[&str] = &[
        "level",
        "allowedCapabilities",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "allowedHostPaths",
        "runAsNonRoot",
        "noNewPrivileges",
        "seccompRequired",
        "readOnlyRootFilesystem",
        "allowedSysctls",
        "appArmor",
        "selinux",
        "procMount",
        "procMountPaths",
        "allowedDevices",
    ];
    let mut f = at.fields()?;
    let level = match f.take("level") {
        None => Level::Privileged,
        Some(l) => match l.at().string()?.as_str() {
            "privileged" => Level::Privileged,
            "baseline" => Level::Baseline,
            "restricted" => Level::Restricted,
            other => {
                return Err(l
                    .at()
                    .error(format!("unknown level `{other}`"))
                    .with_help("expected `privileged`, `baseline` or `restricted`"));
            }
        },
    };
    let mut p = Privileges::for_level(level);
    if let Some(c) = f.take("allowedCapabilities") {
        let mut caps = Vec::new();
        for s in c.at().strings()? {
            let name = cap_name(&s.value);
            if !KNOWN_CAPS.contains(&name.as_str()) {
                let mut d = s.error(format!("unknown capability `{}`", s.value));
                if name == "ALL" {
                    d = d.with_help("to allow every capability, leave `allowedCapabilities` out at level `privileged`");
                } else {
                    d = d.with_help("write a Linux capability such as `NET_BIND_SERVICE` or `CAP_NET_BIND_SERVICE`");
                }
                return Err(d);
            }
            caps.push(name);
        }
        p.allowed_capabilities = Some(caps);
    }
    if let Some(b) = f.take("hostNetwork") {
        p.host_network = b.at().boolean()?;
    }
    if let Some(b) = f.take("hostPID") {
        p.host_pid = b.at().boolean()?;
    }
    if let Some(b) = f.take("hostIPC") {
        p.host_ipc = b.at().boolean()?;
    }
    if let Some(h) = f.take("allowedHostPaths") {
        let mut list = Vec::new();
        for (item, path) in h.at().items()? {
            let item = item.with_path(&path);
            let mut hf = item.fields()?;
            let prefix_f = hf.require("pathPrefix")?;
            let ro = match hf.take("readOnly") {
                Some(r) => r.at().boolean()?,
                None => false,
            };
            hf.finish(&["pathPrefix", "readOnly"])?;
            let prefix = prefix_f.at().string()?;
            if !prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") {
                return Err(prefix_f
                    .at()
                    .error(format!("`{prefix}` is not an absolute path"))
                    .with_help("write a host path such as `/var/log`"));
            }
            let trimmed = prefix.trim_end_matches('/');
            list.push(HostPath {
                path_prefix: if trimmed.is_empty() {
                    "/".into()
                } else {
                    trimmed.into()
                },
                read_only: ro,
            });
        }
        p.allowed_host_paths = Some(list);
    }
    if let Some(b) = f.take("runAsNonRoot") {
        p.run_as_non_root = b.at().boolean()?;
    }
    if let Some(b) = f.take("noNewPrivileges") {
        p.no_new_privileges = b.at().boolean()?;
    }
    if let Some(b) = f.take("seccompRequired") {
        p.seccomp_required = b.at().boolean()?;
    }
    if let Some(b) = f.take("readOnlyRootFilesystem") {
        p.read_only_root_filesystem = b.at().boolean()?;
    }
    if let Some(s) = f.take("allowedSysctls") {
        let mut list = Vec::new();
        for s in s.at().strings()? {
            let body = s.value.strip_suffix('*').unwrap_or(&s.value);
            let ok = !s.value.is_empty()
                && body
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c));
            if !ok {
                return Err(s
                    .error(format!("invalid sysctl `{}`", s.value))
                    .with_help("write a sysctl name such as `net.ipv4.tcp_syncookies`, or a prefix ending in `*`"));
            }
            list.push(s.value);
        }
        p.allowed_sysctls = Some(list);
    }
    if let Some(a) = f.take("appArmor") {
        p.app_armor = match a.at().string()?.as_str() {
            "any" => AppArmor::Any,
            "notUnconfined" => AppArmor::NotUnconfined,
            "required" => AppArmor::Required,
            other => {
                return Err(a
                    .at()
                    .error(format!("unknown appArmor setting `{other}`"))
                    .with_help("expected `any`, `notUnconfined` or `required`"));
            }
        };
    }
    if let Some(s) = f.take("selinux") {
        let at = s.at();
        let mut sf = at.fields()?;
        let types = sf.take("allowedTypes");
        let users = sf.take("allowedUsers");
        let roles = sf.take("allowedRoles");
        sf.finish(&["allowedTypes", "allowedUsers", "allowedRoles"])?;
        for (field, slot, what, example) in [
            (&types, &mut p.selinux_types, "type", "`container_t`"),
            (&users, &mut p.selinux_users, "user", "`system_u`"),
            (&roles, &mut p.selinux_roles, "role", "`system_r`"),
        ] {
            let Some(field) = field else { continue };
            let mut list = Vec::new();
            for t in field.at().strings()? {
                if t.value.is_empty()
                    || !t
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(t
                        .error(format!("invalid SELinux {what} `{}`", t.value))
                        .with_help(format!("write a {what} such as {example}")));
                }
                list.push(t.value);
            }
            *slot = Some(list);
        }
    }
    if let Some(m) = f.take("procMount") {
        p.proc_mount = match m.at().string()?.as_str() {
            "Default" => ProcMount::Default,
            "Unmasked" => ProcMount::Unmasked,
            other => {
                return Err(m
                    .at()
                    .error(format!("unknown procMount `{other}`"))
                    .with_help("expected `Default` or `Unmasked`"));
            }
        };
    }
    if let Some(m) = f.take("procMountPaths") {
        p.proc_paths = parse_proc_paths(m.at())?;
    }
    if let Some(d) = f.take("allowedDevices") {
        let mut list = Vec::new();
        for s in d.at().strings()? {
            match DevicePattern::parse(&s.value) {
                Some(pat) => list.push(pat),
                None => {
                    return Err(s
                        .error(format!("invalid device `{}`", s.value))
                        .with_help("write `c <major>:<minor>` or `b <major>:<minor>`, `*` for any number, e.g. `c 10:229`"));
                }
            }
        }
        p.allowed_devices = Some(list);
    }
    f.finish(KNOWN)?;
    Ok(p)
}

/// `procMountPaths`: a preset name or `{masked: [...], readOnly: [...]}`.
fn parse_proc_paths(at: At<'_>) -> DResult<ProcPaths> {
    if let Ok(name) = at.string() {
        return ProcPaths::preset(&name).ok_or_else(|| {
            at.error(format!("unknown procMountPaths preset `{name}`"))
                .with_help(format!(
                    "expected one of {}, or `{{masked: [...], readOnly: [...]}}`",
                    ticks(PROC_PRESETS)
                ))
        });
    }
    let mut f = at.fields()?;
    let masked = f.take("masked");
    let readonly = f.take("readOnly");
    f.finish(&["masked", "readOnly"])?;
    let mut paths = ProcPaths {
        name: "custom".into(),
        masked: Vec::new(),
        readonly: Vec::new(),
    };
    for (field, slot) in [
        (&masked, &mut paths.masked),
        (&readonly, &mut paths.readonly),
    ] {
        let Some(field) = field else { continue };
        for s in field.at().strings()? {
            if !s.value.starts_with('/') || s.value.split('/').any(|c| c == "..") {
                return Err(s
                    .error(format!("`{}` is not an absolute path", s.value))
                    .with_help("write a container path such as `/proc/sys`"));
            }
            slot.push(s.value);
        }
    }
    Ok(paths)
}

/// `CAP_SYS_ADMIN`, `sys_admin` → `SYS_ADMIN`.
fn cap_name(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
}

fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `sha256:<64 lower hex>` or `sha512:<128 lower hex>`.
fn valid_digest(d: &str) -> bool {
    let hex = |h: &str, n: usize| {
        h.len() == n
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    if let Some(h) = d.strip_prefix("sha256:") {
        hex(h, 64)
    } else if let Some(h) = d.strip_prefix("sha512:") {
        hex(h, 128)
    } else {
        false
    }
}

// ----------------------------------------------------------------------------------------
// Image references
// ----------------------------------------------------------------------------------------

/// An image reference, normalised as Docker and containerd do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host (and port), lower-cased: `docker.io`, `registry.example.com:5000`.
    pub registry: String,
    /// Repository path: `library/nginx`.
    pub repository: String,
    /// The tag: as written, or `latest` when neither tag nor digest was written.
    pub tag: Option<String>,
    /// Whether `tag` is the implicit `latest`.
    pub implicit_tag: bool,
    /// The digest, `sha256:…`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference (`nginx`, `ghcr.io/org/app:1.2`, `repo@sha256:…`).
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("invalid image reference `{s}`: {why}");
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !valid_any_digest(d) {
                    return Err(bad("bad digest"));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A `:` after the last `/` starts the tag (before it, it is a registry port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if i >= last_slash => (
                name_tag.get(..i).unwrap_or(""),
                Some(name_tag.get(i + 1..).unwrap_or("").to_string()),
            ),
            _ => (name_tag, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(bad("bad tag"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_ascii_lowercase(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        if registry.is_empty()
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err(bad("bad registry"));
        }
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "a repository is lower-case letters, digits and separators",
            ));
        }
        let implicit_tag = tag.is_none() && digest.is_none();
        Ok(ImageRef {
            registry,
            repository,
            tag: if implicit_tag {
                Some("latest".into())
            } else {
                tag
            },
            implicit_tag,
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag
            && !(self.implicit_tag && self.digest.is_some())
        {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The OCI image-spec digest grammar: `algorithm:encoded`.
fn valid_any_digest(d: &str) -> bool {
    let Some((alg, enc)) = d.split_once(':') else {
        return false;
    };
    !alg.is_empty()
        && alg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
        && enc.len() >= 32
        && enc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c))
}

// ----------------------------------------------------------------------------------------
// The request
// ----------------------------------------------------------------------------------------

/// A container about to start: what an OCI hook reads (state on stdin, `config.json` in the
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
    /// ([`crate::container_read`]).
    pub fn from_oci(state: &str, config: &str) -> Result<ContainerRequest, String> {
        Ok(ContainerRequest {
            state: serde_json::from_str(state).map_err(|e| format!("invalid OCI state: {e}"))?,
            config: crate::container_read::read_config(config)?,
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
// The decision
// ----------------------------------------------------------------------------------------

/// Whether a container may start, and every reason it may not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDecision {
    /// No violation.
    pub allowed: bool,
    /// Every violated control of every selected policy, in policy order then control order.
    pub violations: Vec<Violation>,
    /// The selected policies (`ns/name`), in input order.
    pub policies: Vec<String>,
    /// Who and what was decided on.
    pub subject: Subject,
    /// Why nothing was checked, when nothing was (`sandbox container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
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

/// The container as the decision saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// The OCI container id.
    pub id: String,
    /// The pod's namespace, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The container's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The service account, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The pod labels used for selection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the labels came from: `pod`, `cri-o`, `inventory`, `annotation`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_from: Option<String>,
    /// The image reference as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl fmt::Display for ContainerDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        write!(f, "container `{}` {verdict}", self.subject.id)?;
        if let Some(s) = &self.skipped {
            write!(f, " ({s})")?;
        }
        for v in &self.violations {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

impl Engine {
    /// Decides a container start with the compiled engine's ContainerPolicies and inventory.
    pub fn decide_container(&self, req: &ContainerRequest) -> Result<ContainerDecision, String> {
        decide_container(&self.container, &self.inventory, req)
    }
}

/// What the request says about the container, resolved once.
struct Facts<'a> {
    annotations: BTreeMap<&'a str, &'a str>,
    subject: Subject,
    image_digest: Option<String>,
    /// Where the container's storage may legitimately come from (host facts, bundle).
    storage: Storage<'a>,
    /// The host's facts, when it gave them.
    host: Option<&'a HostFacts>,
}

impl Facts<'_> {
    fn get(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|k| self.annotations.get(k))
            .map(|v| (*v).to_string())
            .filter(|v| !v.is_empty())
    }
}

fn labels_json(key: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("annotation `{key}` is not a JSON object of string labels: {e}"))
}

fn facts<'a>(inventory: &Inventory, req: &'a ContainerRequest) -> Result<Facts<'a>, String> {
    use annotations as a;
    let mut all: BTreeMap<&str, &str> = BTreeMap::new();
    for map in [
        &req.config.annotations,
        &req.state.annotations,
        &req.annotations,
    ] {
        for (k, v) in map {
            all.insert(k.as_str(), v.as_str());
        }
    }
    let mut f = Facts {
        annotations: all,
        subject: Subject {
            id: req.state.id.clone(),
            ..Subject::default()
        },
        image_digest: None,
        // Exemptions come from the host (its facts, NRI's pod uid) and the bundle the
        // runtime created, never from annotations or the container id.
        storage: Storage::new(
            &req.state.bundle,
            req.host.as_ref(),
            req.pod.as_ref().and_then(|p| p.uid.as_deref()),
        ),
        host: req.host.as_ref(),
    };
    let pod = req.pod.clone().unwrap_or_default();
    f.subject.namespace = pod
        .namespace
        .clone()
        .or_else(|| f.get(&[a::CRI_SANDBOX_NAMESPACE, a::POD_NAMESPACE]));
    f.subject.pod = pod
        .name
        .clone()
        .or_else(|| f.get(&[a::CRI_SANDBOX_NAME, a::POD_NAME]));
    f.subject.container = f.get(&[a::CRI_CONTAINER_NAME, a::CONTAINER_NAME]);
    let image = req.image.clone().unwrap_or_default();
    f.subject.image = image
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| f.get(&[a::CRI_IMAGE_NAME, a::CRIO_IMAGE_NAME]));
    f.image_digest = image.digest.clone();

    let workload = match (&f.subject.namespace, &f.subject.pod) {
        (Some(ns), Some(name)) => inventory.workload(ns, name),
        _ => None,
    };
    let (labels, from) = if let Some(l) = &pod.labels {
        (Some(l.clone()), "pod")
    } else if let Some(text) = f.get(&[a::CRIO_LABELS]) {
        (Some(labels_json(a::CRIO_LABELS, &text)?), "cri-o")
    } else if let Some(w) = workload {
        (Some(w.labels.clone()), "inventory")
    } else if let Some(text) = f.get(&[a::PALISADE_LABELS]) {
        (Some(labels_json(a::PALISADE_LABELS, &text)?), "annotation")
    } else {
        (None, "")
    };
    if let Some(l) = labels {
        f.subject.labels = l;
        f.subject.labels_from = Some(from.to_string());
    }
    f.subject.service_account = pod
        .service_account
        .clone()
        .or_else(|| workload.map(|w| w.service_account.clone()))
        .or_else(|| f.get(&[a::PALISADE_SERVICE_ACCOUNT]));
    Ok(f)
}

/// Decides whether a container may start: every policy whose selector matches is checked,
/// every violated control reported. `Err` when the request cannot be read; hosts deny then.
pub fn decide_container(
    policies: &[ContainerPolicy],
    inventory: &Inventory,
    req: &ContainerRequest,
) -> Result<ContainerDecision, String> {
    if req.state.id.is_empty() {
        return Err("invalid OCI state: `id` is empty".into());
    }
    let f = facts(inventory, req)?;
    let mut decision = ContainerDecision {
        allowed: true,
        subject: f.subject.clone(),
        ..ContainerDecision::default()
    };
    // A sandbox (pause) container is checked like any other: the host namespaces, sysctls
    // and privileges it holds are the pod's (PSS judges `hostNetwork` on the pod). Only its
    // image is the runtime's configuration, not the workload's: image rules are skipped for
    // a container that says it is a sandbox and runs the pause command, nothing else.
    let kind = f.get(&[
        annotations::CRI_CONTAINER_TYPE,
        annotations::CRIO_CONTAINER_TYPE,
    ]);
    let pause = req
        .config
        .process
        .as_ref()
        .is_some_and(|p| p.args == ["/pause"]);
    let skip_images = kind.as_deref() == Some("sandbox") && pause;
    if skip_images {
        decision.skipped = Some(
            "sandbox container: image rules not checked (the pause image is the runtime's)".into(),
        );
    }
    // Parsed once, reported per policy.
    let image = f.subject.image.as_deref().map(ImageRef::parse);
    for p in policies.iter().filter(|p| selects(&p.selector, &f.subject)) {
        let id = p.id();
        decision.policies.push(id.clone());
        let mut out = Report {
            policy: &id,
            violations: &mut decision.violations,
        };
        if !skip_images {
            check_images(&p.images, image.as_ref(), &f, &mut out);
        }
        check_privileges(&p.privileges, &req.config, &f, &req.state.id, &mut out);
    }
    decision.allowed = decision.violations.is_empty();
    Ok(decision)
}

fn selects(sel: &Selector, s: &Subject) -> bool {
    let ns_ok = sel.namespaces.is_empty()
        || s.namespace
            .as_ref()
            .is_some_and(|n| sel.namespaces.contains(n));
    ns_ok && sel.labels.matches(&s.labels)
}

struct Report<'a> {
    policy: &'a str,
    violations: &'a mut Vec<Violation>,
}

impl Report<'_> {
    fn add(&mut self, control: &str, message: String) {
        self.violations.push(Violation {
            control: control.to_string(),
            policy: self.policy.to_string(),
            message,
        });
    }
}

fn ticks<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_images(
    rules: &ImageRules,
    image: Option<&Result<ImageRef, String>>,
    f: &Facts<'_>,
    out: &mut Report<'_>,
) {
    if rules.is_empty() {
        return;
    }
    let img = match image {
        None => {
            out.add(
                "image",
                format!(
                    "no image reference in the annotations (`{}` or `{}`); the image rules cannot be checked",
                    annotations::CRI_IMAGE_NAME,
                    annotations::CRIO_IMAGE_NAME
                ),
            );
            return;
        }
        Some(Err(e)) => {
            out.add("image", format!("{e}; the image rules cannot be checked"));
            return;
        }
        Some(Ok(i)) => i,
    };
    if let Some(allowed) = &rules.allowed_registries
        && !allowed.iter().any(|p| p.matches(&img.registry))
    {
        let texts: Vec<&str> = allowed.iter().map(|p| p.text.as_str()).collect();
        out.add(
            "image.registry",
            format!(
                "image `{img}` is from registry `{}`; allowed registries: {}",
                img.registry,
                ticks(&texts)
            ),
        );
    }
    if let Some(allowed) = &rules.allowed_repositories {
        let name = img.name();
        if !allowed.iter().any(|p| p.matches(&name)) {
            let texts: Vec<&str> = allowed.iter().map(|p| p.text.as_str()).collect();
            out.add(
                "image.repository",
                format!(
                    "image `{img}` is from repository `{name}`; allowed repositories: {}",
                    ticks(&texts)
                ),
            );
        }
    }
    if rules.require_digest && img.digest.is_none() {
        out.add(
            "image.digest",
            format!(
                "image `{img}` is not pinned by digest; write it as `{}@sha256:…`",
                img.name()
            ),
        );
    }
    if img.digest.is_none()
        && let Some(tag) = &img.tag
        && rules.denied_tags.contains(tag)
    {
        let how = if img.implicit_tag {
            " (implicit: the reference has no tag)"
        } else {
            ""
        };
        out.add(
            "image.deniedTag",
            format!(
                "image `{img}` uses tag `{tag}`{how}; denied tags: {}",
                ticks(&rules.denied_tags)
            ),
        );
    }
    let digest = img.digest.clone().or_else(|| f.image_digest.clone());
    if let Some(rule) = &rules.provenance {
        let offered = f.host.map_or(&[][..], |h| h.attestations.as_slice());
        if let Some(message) =
            crate::provenance::check_image(rule, &img.to_string(), digest.as_deref(), offered)
        {
            out.add("image.provenance", message);
        }
    }
    for entry in &rules.digests_by_identity {
        if f.subject.namespace.as_deref() != Some(entry.namespace.as_str()) {
            continue;
        }
        let applies = match &entry.who {
            IdentityKey::ServiceAccount(sa) => match &f.subject.service_account {
                Some(have) => have == sa,
                None => {
                    out.add(
                        "image.digestByIdentity",
                        format!(
                            "the service account of the container is unknown, so it may be {entry}, which may only run digests {}; give it through the inventory or `{}`",
                            ticks(&entry.digests),
                            annotations::PALISADE_SERVICE_ACCOUNT
                        ),
                    );
                    continue;
                }
            },
            IdentityKey::Labels(l) => l.iter().all(|(k, v)| f.subject.labels.get(k) == Some(v)),
        };
        if !applies {
            continue;
        }
        match &digest {
            Some(d) if entry.digests.contains(d) => {}
            Some(d) => out.add(
                "image.digestByIdentity",
                format!(
                    "image `{img}` has digest `{d}`; {entry} may only run digests {}",
                    ticks(&entry.digests)
                ),
            ),
            None => out.add(
                "image.digestByIdentity",
                format!(
                    "image `{img}` has no digest; {entry} may only run digests {}",
                    ticks(&entry.digests)
                ),
            ),
        }
    }
}

fn has_namespace(linux: Option<&OciLinux>, kind: &str) -> bool {
    linux.is_some_and(|l| l.namespaces.iter().any(|n| n.kind == kind))
}

fn check_privileges(
    p: &Privileges,
    config: &OciConfig,
    f: &Facts<'_>,
    _container_id: &str,
    out: &mut Report<'_>,
) {
    let process = config.process.as_ref();
    let linux = config.linux.as_ref();
    let level = p.level.as_str();
    let own_userns =
        has_namespace(linux, "user") && namespace_is_host(linux, "user", f.host).is_none();

    if let Some(allowed) = &p.allowed_capabilities {
        let mut granted: Vec<&str> = Vec::new();
        if let Some(c) = process.and_then(|pr| pr.capabilities.as_ref()) {
            for set in [
                &c.bounding,
                &c.effective,
                &c.permitted,
                &c.inheritable,
                &c.ambient,
            ] {
                for cap in set {
                    if !allowed.contains(&cap_name(cap)) && !granted.contains(&cap.as_str()) {
                        granted.push(cap);
                    }
                }
            }
        }
        if !granted.is_empty() {
            let allowed_caps: Vec<String> = allowed.iter().map(|c| format!("CAP_{c}")).collect();
            out.add(
                "capabilities",
                format!(
                    "the container holds {} (in `process.capabilities`); allowed (level `{level}` or `allowedCapabilities`): {}",
                    ticks(&granted),
                    ticks(&allowed_caps)
                ),
            );
        }
    }
    for (allowed, kind, control) in [
        (p.host_network, "network", "hostNetwork"),
        (p.host_pid, "pid", "hostPID"),
        (p.host_ipc, "ipc", "hostIPC"),
    ] {
        if !allowed && let Some(why) = namespace_is_host(linux, kind, f.host) {
            out.add(
                control,
                format!(
                    "the container shares the host's `{kind}` namespace ({why}); `{control}` is not allowed"
                ),
            );
        }
    }
    if let Some(allowed) = &p.allowed_host_paths {
        let bad = host_paths(allowed, config, &f.storage);
        if !bad.is_empty() {
            let prefixes: Vec<&str> = allowed.iter().map(|h| h.path_prefix.as_str()).collect();
            out.add(
                "hostPath",
                format!(
                    "the container mounts host paths {}; allowed host paths: {}",
                    bad.join(", "),
                    ticks(&prefixes)
                ),
            );
        }
    }
    if p.run_as_non_root {
        let uid = process.and_then(|pr| pr.user.as_ref()).map_or(0, |u| u.uid);
        let host_uid = if own_userns {
            linux
                .into_iter()
                .flat_map(|l| &l.uid_mappings)
                .find(|m| uid >= m.container_id && uid - m.container_id < m.size)
                .map(|m| m.host_id.saturating_add(uid - m.container_id))
        } else {
            Some(uid)
        };
        match host_uid {
            Some(0) => out.add(
                "runAsNonRoot",
                format!(
                    "the container runs as uid `{uid}`, root on the host (`process.user.uid`); uid 0 is not allowed"
                ),
            ),
            None => out.add(
                "runAsNonRoot",
                format!(
                    "the container's uid `{uid}` has no mapping in `linux.uidMappings`; uid 0 is not allowed"
                ),
            ),
            Some(_) => {}
        }
    }
    if p.no_new_privileges && process.and_then(|pr| pr.no_new_privileges) != Some(true) {
        out.add(
            "noNewPrivileges",
            "`process.noNewPrivileges` is not `true`; the container must not gain privileges (allowPrivilegeEscalation: false)".into(),
        );
    }
    checks::check_seccomp(p.seccomp_required, linux, out);
    if p.read_only_root_filesystem && !config.root.as_ref().is_some_and(|r| r.readonly) {
        out.add(
            "readOnlyRootFilesystem",
            "the root filesystem is writable (`root.readonly` is not `true`); a read-only root filesystem is required".into(),
        );
    }
    checks::check_sysctls(p.allowed_sysctls.as_ref(), linux, out);
    checks::check_apparmor(p.app_armor, process, out);
    checks::check_selinux(p, process, out);
    checks::check_proc_mount(p, linux, out);
    checks::check_kernel_mounts(p, config, out);
    checks::check_devices(p.allowed_devices.as_ref(), linux, out);
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::type_complexity
    )]
    use serde_json::{Value, json};

    use super::*;
    use crate::{PolicySet, SourceFile, load};

    const DIGEST: &str = "sha256:4b1c9cf9d2d7a1b0e5f0d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2";
    const OTHER_DIGEST: &str =
        "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    const UID: &str = "6f1a2b3c-0000-4000-8000-00000000abcd";
    const SANDBOX: &str = "9c1d0e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f";
    const CID: &str = "3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f";

    const INVENTORY: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: cluster}
spec:
  workloads:
  - {name: processor-7d9f4, namespace: payments, serviceAccount: processor, labels: {app: processor, tier: backend}}
"#;

    fn masked() -> Value {
        json!([
            "/proc/asound",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ])
    }

    fn readonly() -> Value {
        json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ])
    }

    /// A pod's application container as containerd's CRI plugin writes it: restricted-
    /// compliant (uid 1000, only NET_BIND_SERVICE, no new privileges, RuntimeDefault seccomp,
    /// read-only root), joining the pause container's namespaces.
    fn containerd_config() -> Value {
        let caps = json!(["CAP_NET_BIND_SERVICE"]);
        json!({
          "ociVersion": "1.1.0",
          "process": {
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000]},
            "args": ["/processor"], "cwd": "/",
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
            "apparmorProfile": "cri-containerd.apparmor.d",
            "oomScoreAdj": 1000
          },
          "root": {"path": "rootfs", "readonly": true},
          "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": format!("/var/lib/kubelet/pods/{UID}/etc-hosts"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/dev/termination-log", "type": "bind", "source": format!("/var/lib/kubelet/pods/{UID}/containers/processor/0a1b2c3d"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/hostname", "type": "bind", "source": format!("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/hostname"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": format!("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/resolv.conf"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/dev/shm", "type": "bind", "source": format!("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/shm"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/var/run/secrets/kubernetes.io/serviceaccount", "type": "bind", "source": format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~projected/kube-api-access-8xk2p"), "options": ["rbind", "rprivate", "ro"]}
          ],
          "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "processor",
            "io.kubernetes.cri.image-name": format!("registry.example.com/payments/processor@{DIGEST}"),
            "io.kubernetes.cri.sandbox-id": SANDBOX,
            "io.kubernetes.cri.sandbox-name": "processor-7d9f4",
            "io.kubernetes.cri.sandbox-namespace": "payments",
            "io.kubernetes.cri.sandbox-uid": UID
          },
          "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "cgroupsPath": "kubepods-besteffort-pod6f1a2b3c.slice:cri-containerd:3e4f",
            "namespaces": [
              {"type": "pid"},
              {"type": "ipc", "path": "/proc/4242/ns/ipc"},
              {"type": "uts", "path": "/proc/4242/ns/uts"},
              {"type": "mount"},
              {"type": "network", "path": "/proc/4242/ns/net"}
            ],
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]},
            "maskedPaths": masked(),
            "readonlyPaths": readonly()
          }
        })
    }

    /// `runc spec` (runc 1.1): root, AUDIT_WRITE/KILL/NET_BIND_SERVICE, no seccomp.
    fn runc_spec_default() -> Value {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        json!({
          "ociVersion": "1.0.2-dev",
          "process": {
            "terminal": true, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
          },
          "root": {"path": "rootfs", "readonly": true},
          "hostname": "runc",
          "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
          ],
          "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
          }
        })
    }

    /// The same container under CRI-O: its annotations instead of containerd's.
    fn crio_config() -> Value {
        let mut c = containerd_config();
        c["annotations"] = json!({
            "io.kubernetes.cri-o.ContainerType": "container",
            "io.kubernetes.cri-o.ImageName": format!("registry.example.com/payments/processor@{DIGEST}"),
            "io.kubernetes.cri-o.Labels": r#"{"io.kubernetes.container.name":"processor","io.kubernetes.pod.name":"processor-7d9f4","io.kubernetes.pod.namespace":"payments","app":"processor"}"#,
            "io.kubernetes.cri-o.SandboxID": SANDBOX,
            "io.kubernetes.container.name": "processor",
            "io.kubernetes.pod.name": "processor-7d9f4",
            "io.kubernetes.pod.namespace": "payments",
            "io.kubernetes.pod.uid": UID
        });
        c["mounts"][8]["source"] = json!(format!(
            "/run/containers/storage/overlay-containers/{SANDBOX}/userdata/hostname"
        ));
        c["mounts"][9]["source"] = json!(format!(
            "/run/containers/storage/overlay-containers/{SANDBOX}/userdata/resolv.conf"
        ));
        c["mounts"][10]["source"] = json!(format!(
            "/run/containers/storage/overlay-containers/{SANDBOX}/userdata/shm"
        ));
        c
    }

    /// The state a runtime passes on stdin, annotations copied from the config, and the
    /// facts the hook establishes on a host where pid 4242 is the pod's pause process (its
    /// namespaces are not the host's) and the sandbox `SANDBOX` of pod `UID` is proven.
    fn request(config: Value) -> ContainerRequest {
        let state = json!({
            "ociVersion": "1.0.2-dev", "id": CID, "status": "creating", "pid": 4300,
            "bundle": format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}"),
            "annotations": config["annotations"].clone()
        });
        let mut req = ContainerRequest::from_oci(&state.to_string(), &config.to_string()).unwrap();
        req.host = Some(HostFacts {
            namespaces: crate::container_host::spelled_namespace_facts(&req.config),
            sandbox: Some(crate::container_host::SandboxFact::from_runtime(
                SANDBOX,
                Some(UID),
            )),
            ..HostFacts::default()
        });
        req
    }

    fn set(spec: &str) -> PolicySet {
        let text = format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {{name: p, namespace: security}}\nspec: {spec}\n---\n{INVENTORY}"
        );
        load(&[SourceFile::new("p.yaml", text)]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn controls(d: &ContainerDecision) -> Vec<&str> {
        d.violations.iter().map(|v| v.control.as_str()).collect()
    }

    fn decide(spec: &str, config: Value) -> ContainerDecision {
        let s = set(spec);
        decide_container(&s.container, &s.inventory, &request(config)).unwrap()
    }

    fn add_mount(c: &mut Value, source: &str, dest: &str, options: Value) {
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": dest, "type": "bind", "source": source, "options": options}),
        );
    }

    fn drop_ns(c: &mut Value, kind: &str) {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != kind);
    }

    fn set_image(c: &mut Value, image: &str) {
        c["annotations"]["io.kubernetes.cri.image-name"] = json!(image);
    }

    struct Case {
        name: &'static str,
        spec: &'static str,
        mutate: fn(&mut Value),
        want: &'static [&'static str],
    }

    const BASELINE: &str = "{privileges: {level: baseline}}";
    const RESTRICTED: &str = "{privileges: {level: restricted}}";

    fn run(cases: &[Case]) {
        let mut failed = Vec::new();
        for c in cases {
            let mut config = containerd_config();
            (c.mutate)(&mut config);
            let d = decide(c.spec, config);
            let got = controls(&d);
            if got != c.want {
                failed.push(format!("{}: want {:?}, got {:?}\n{d}", c.name, c.want, got));
            }
            assert_eq!(d.allowed, c.want.is_empty(), "{}", c.name);
            for v in &d.violations {
                assert!(
                    !v.message.is_empty() && v.message.contains('`'),
                    "{}: {v}",
                    c.name
                );
                assert_eq!(v.policy, "security/p");
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn pod_security_standards_levels() {
        run(&[
            Case {
                name: "a hardened pod container passes restricted",
                spec: RESTRICTED,
                mutate: |_| {},
                want: &[],
            },
            Case {
                name: "a hardened pod container passes baseline",
                spec: BASELINE,
                mutate: |_| {},
                want: &[],
            },
            Case {
                name: "baseline: CAP_SYS_ADMIN in the bounding set",
                spec: BASELINE,
                mutate: |c| {
                    c["process"]["capabilities"]["bounding"] =
                        json!(["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"])
                },
                want: &["capabilities"],
            },
            Case {
                name: "baseline: the runtimes' default set (with NET_RAW) passes",
                spec: BASELINE,
                mutate: |c| {
                    c["process"]["capabilities"]["bounding"] = json!([
                        "CAP_CHOWN",
                        "CAP_DAC_OVERRIDE",
                        "CAP_FSETID",
                        "CAP_FOWNER",
                        "CAP_MKNOD",
                        "CAP_NET_RAW",
                        "CAP_SETGID",
                        "CAP_SETUID",
                        "CAP_SETFCAP",
                        "CAP_SETPCAP",
                        "CAP_NET_BIND_SERVICE",
                        "CAP_SYS_CHROOT",
                        "CAP_KILL",
                        "CAP_AUDIT_WRITE"
                    ])
                },
                want: &[],
            },
            Case {
                name: "restricted: the runtimes' default set is not dropped",
                spec: RESTRICTED,
                mutate: |c| {
                    c["process"]["capabilities"]["bounding"] =
                        json!(["CAP_CHOWN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"])
                },
                want: &["capabilities"],
            },
            Case {
                name: "restricted: an ambient capability counts",
                spec: RESTRICTED,
                mutate: |c| c["process"]["capabilities"]["ambient"] = json!(["CAP_CHOWN"]),
                want: &["capabilities"],
            },
            Case {
                name: "restricted: no capabilities at all passes",
                spec: RESTRICTED,
                mutate: |c| c["process"]["capabilities"] = json!({}),
                want: &[],
            },
            Case {
                name: "baseline: no network namespace entry is hostNetwork",
                spec: BASELINE,
                mutate: |c| drop_ns(c, "network"),
                want: &["hostNetwork"],
            },
            Case {
                name: "restricted: no pid namespace entry is hostPID",
                spec: RESTRICTED,
                mutate: |c| drop_ns(c, "pid"),
                want: &["hostPID"],
            },
            Case {
                name: "baseline: ipc joined through /proc/1/ns/ipc is hostIPC",
                spec: BASELINE,
                mutate: |c| c["linux"]["namespaces"][1]["path"] = json!("/proc/1/ns/ipc"),
                want: &["hostIPC"],
            },
            Case {
                name: "baseline: network joined through /proc/self/ns/net is hostNetwork",
                spec: BASELINE,
                mutate: |c| c["linux"]["namespaces"][4]["path"] = json!("/proc/self/ns/net"),
                want: &["hostNetwork"],
            },
            Case {
                name: "baseline: a CNI named netns is the pod's",
                spec: BASELINE,
                mutate: |c| {
                    c["linux"]["namespaces"][4]["path"] = json!("/var/run/netns/cni-5d6e7f80-1234")
                },
                want: &[],
            },
            Case {
                name: "baseline: no linux section at all shares every host namespace",
                spec: BASELINE,
                mutate: |c| {
                    c["linux"] = json!({"maskedPaths": masked(), "readonlyPaths": readonly()});
                },
                // No device rules either: nothing denies the host's devices.
                want: &["hostNetwork", "hostPID", "hostIPC", "devices"],
            },
            Case {
                name: "baseline: the docker socket is a host path",
                spec: BASELINE,
                mutate: |c| {
                    add_mount(
                        c,
                        "/var/run/docker.sock",
                        "/var/run/docker.sock",
                        json!(["rbind", "rprivate"]),
                    )
                },
                want: &["hostPath"],
            },
            Case {
                name: "baseline: a bind mount by option only is a host path",
                spec: BASELINE,
                mutate: |c| {
                    c["mounts"].as_array_mut().unwrap().push(
                        json!({"destination": "/host", "source": "/", "options": ["rbind", "ro"]}),
                    )
                },
                want: &["hostPath"],
            },
            Case {
                name: "baseline: another pod's kubelet volume is a host path",
                spec: BASELINE,
                mutate: |c| {
                    add_mount(
                        c,
                        "/var/lib/kubelet/pods/11111111-2222-3333-4444-555555555555/volumes/kubernetes.io~secret/db",
                        "/db",
                        json!(["rbind", "ro"]),
                    )
                },
                want: &["hostPath"],
            },
            Case {
                name: "baseline: `..` cannot climb out of the pod's kubelet directory",
                spec: BASELINE,
                mutate: |c| {
                    add_mount(
                        c,
                        &format!(
                            "/var/lib/kubelet/pods/{UID}/../../../../run/containerd/containerd.sock"
                        ),
                        "/sock",
                        json!(["rbind"]),
                    )
                },
                want: &["hostPath"],
            },
            Case {
                name: "baseline: containerd's state root without our ids is a host path",
                spec: BASELINE,
                mutate: |c| {
                    add_mount(
                        c,
                        "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes",
                        "/s",
                        json!(["rbind"]),
                    )
                },
                want: &["hostPath"],
            },
            Case {
                name: "baseline: uid 0 passes",
                spec: BASELINE,
                mutate: |c| c["process"]["user"]["uid"] = json!(0),
                want: &[],
            },
            Case {
                name: "restricted: uid 0 is runAsNonRoot",
                spec: RESTRICTED,
                mutate: |c| c["process"]["user"]["uid"] = json!(0),
                want: &["runAsNonRoot"],
            },
            Case {
                name: "restricted: no process.user is uid 0",
                spec: RESTRICTED,
                mutate: |c| {
                    c["process"].as_object_mut().unwrap().remove("user");
                },
                want: &["runAsNonRoot"],
            },
            Case {
                name: "restricted: uid 0 in a user namespace mapped to 100000 passes",
                spec: RESTRICTED,
                mutate: |c| {
                    c["process"]["user"]["uid"] = json!(0);
                    c["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "user"}));
                    c["linux"]["uidMappings"] =
                        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                },
                want: &[],
            },
            Case {
                name: "restricted: a user namespace mapping uid 0 to host root is root",
                spec: RESTRICTED,
                mutate: |c| {
                    c["process"]["user"]["uid"] = json!(0);
                    c["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "user"}));
                    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
                },
                want: &["runAsNonRoot"],
            },
            Case {
                name: "baseline: noNewPrivileges false passes",
                spec: BASELINE,
                mutate: |c| c["process"]["noNewPrivileges"] = json!(false),
                want: &[],
            },
            Case {
                name: "restricted: noNewPrivileges false",
                spec: RESTRICTED,
                mutate: |c| c["process"]["noNewPrivileges"] = json!(false),
                want: &["noNewPrivileges"],
            },
            Case {
                name: "restricted: noNewPrivileges absent",
                spec: RESTRICTED,
                mutate: |c| {
                    c["process"]
                        .as_object_mut()
                        .unwrap()
                        .remove("noNewPrivileges");
                },
                want: &["noNewPrivileges"],
            },
            Case {
                name: "baseline: no seccomp profile passes (unset and Unconfined look alike)",
                spec: BASELINE,
                mutate: |c| {
                    c["linux"].as_object_mut().unwrap().remove("seccomp");
                },
                want: &[],
            },
            Case {
                name: "restricted: no seccomp profile",
                spec: RESTRICTED,
                mutate: |c| {
                    c["linux"].as_object_mut().unwrap().remove("seccomp");
                },
                want: &["seccomp"],
            },
            Case {
                name: "baseline: a safe sysctl passes",
                spec: BASELINE,
                mutate: |c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}),
                want: &[],
            },
            Case {
                name: "restricted: an unsafe sysctl",
                spec: RESTRICTED,
                mutate: |c| {
                    c["linux"]["sysctl"] =
                        json!({"kernel.msgmax": "65536", "net.ipv4.tcp_syncookies": "1"})
                },
                want: &["sysctls"],
            },
            Case {
                name: "baseline: AppArmor unconfined",
                spec: BASELINE,
                mutate: |c| c["process"]["apparmorProfile"] = json!("unconfined"),
                want: &["appArmor"],
            },
            Case {
                name: "baseline: no AppArmor profile is how containerd writes Unconfined",
                spec: BASELINE,
                mutate: |c| {
                    c["process"]
                        .as_object_mut()
                        .unwrap()
                        .remove("apparmorProfile");
                },
                want: &["appArmor"],
            },
            Case {
                name: "baseline: SELinux container_t passes",
                spec: BASELINE,
                mutate: |c| {
                    c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c4,c5")
                },
                want: &[],
            },
            Case {
                name: "restricted: SELinux spc_t (super-privileged) is refused",
                spec: RESTRICTED,
                mutate: |c| c["process"]["selinuxLabel"] = json!("system_u:system_r:spc_t:s0"),
                want: &["selinux"],
            },
            Case {
                name: "baseline: emptied maskedPaths is an unmasked /proc",
                spec: BASELINE,
                mutate: |c| c["linux"]["maskedPaths"] = json!([]),
                want: &["procMount"],
            },
            Case {
                name: "restricted: absent readonlyPaths is an unmasked /proc",
                spec: RESTRICTED,
                mutate: |c| {
                    c["linux"].as_object_mut().unwrap().remove("readonlyPaths");
                },
                want: &["procMount"],
            },
            Case {
                name: "baseline: unmasked /proc in a user namespace mapped away from host root passes (hostUsers: false)",
                spec: BASELINE,
                mutate: |c| {
                    c["linux"]["maskedPaths"] = json!([]);
                    c["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "user"}));
                    c["linux"]["uidMappings"] =
                        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                },
                want: &[],
            },
            Case {
                name: "privileged: a fully privileged container passes",
                spec: "{privileges: {level: privileged}}",
                mutate: privileged,
                want: &[],
            },
            Case {
                name: "baseline: a privileged container fails every control it shows",
                spec: BASELINE,
                mutate: privileged,
                want: &[
                    "capabilities",
                    "hostNetwork",
                    "hostPID",
                    "hostIPC",
                    "hostPath",
                    "sysctls",
                    "appArmor",
                    "procMount",
                    "devices",
                ],
            },
            Case {
                name: "restricted: a privileged container fails every control it shows",
                spec: RESTRICTED,
                mutate: privileged,
                want: &[
                    "capabilities",
                    "hostNetwork",
                    "hostPID",
                    "hostIPC",
                    "hostPath",
                    "runAsNonRoot",
                    "noNewPrivileges",
                    "seccomp",
                    "sysctls",
                    "appArmor",
                    "procMount",
                    "devices",
                ],
            },
        ]);
    }

    /// `privileged: true` with host namespaces, root, every device, the docker socket and an
    /// unsafe sysctl.
    fn privileged(c: &mut Value) {
        let all: Vec<String> = KNOWN_CAPS.iter().map(|c| format!("CAP_{c}")).collect();
        c["process"]["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
        c["process"]["user"]["uid"] = json!(0);
        c["process"]["noNewPrivileges"] = json!(false);
        c["process"]["apparmorProfile"] = json!("unconfined");
        c["linux"] = json!({"namespaces": [{"type": "mount"}, {"type": "uts"}], "sysctl": {"kernel.sem": "250 32000 100 128"}, "maskedPaths": [], "readonlyPaths": [],
                            "resources": {"devices": [{"allow": true, "access": "rwm"}]}});
        add_mount(
            c,
            "/var/run/docker.sock",
            "/var/run/docker.sock",
            json!(["rbind"]),
        );
    }

    #[test]
    fn each_control_alone_and_overriding_the_level() {
        run(&[
            Case {
                name: "allowedCapabilities alone: NET_ADMIN is not listed",
                spec: "{privileges: {allowedCapabilities: [NET_BIND_SERVICE, CHOWN]}}",
                mutate: |c| c["process"]["effective"] = json!(null),
                want: &[],
            },
            Case {
                name: "allowedCapabilities alone: CAP_NET_ADMIN held",
                spec: "{privileges: {allowedCapabilities: [NET_BIND_SERVICE, cap_chown]}}",
                mutate: |c| c["process"]["capabilities"]["permitted"] = json!(["CAP_NET_ADMIN"]),
                want: &["capabilities"],
            },
            Case {
                name: "allowedCapabilities overrides restricted",
                spec: "{privileges: {level: restricted, allowedCapabilities: [NET_ADMIN, NET_BIND_SERVICE]}}",
                mutate: |c| c["process"]["capabilities"]["permitted"] = json!(["CAP_NET_ADMIN"]),
                want: &[],
            },
            Case {
                name: "hostNetwork: true overrides baseline",
                spec: "{privileges: {level: baseline, hostNetwork: true}}",
                mutate: |c| drop_ns(c, "network"),
                want: &[],
            },
            Case {
                name: "hostPID: false alone",
                spec: "{privileges: {hostPID: false}}",
                mutate: |c| drop_ns(c, "pid"),
                want: &["hostPID"],
            },
            Case {
                name: "hostIPC: false alone ignores the network namespace",
                spec: "{privileges: {hostIPC: false}}",
                mutate: |c| drop_ns(c, "network"),
                want: &[],
            },
            Case {
                name: "allowedHostPaths: a read-only mount under the prefix passes",
                spec: "{privileges: {allowedHostPaths: [{pathPrefix: /var/log/, readOnly: true}]}}",
                mutate: |c| add_mount(c, "/var/log/pods", "/logs", json!(["rbind", "ro"])),
                want: &[],
            },
            Case {
                name: "allowedHostPaths: a writable mount where readOnly is required",
                spec: "{privileges: {allowedHostPaths: [{pathPrefix: /var/log, readOnly: true}]}}",
                mutate: |c| add_mount(c, "/var/log/pods", "/logs", json!(["rbind", "rw"])),
                want: &["hostPath"],
            },
            Case {
                name: "allowedHostPaths: prefixes match whole components",
                spec: "{privileges: {allowedHostPaths: [{pathPrefix: /var/log}]}}",
                mutate: |c| add_mount(c, "/var/logs", "/logs", json!(["rbind"])),
                want: &["hostPath"],
            },
            Case {
                name: "allowedHostPaths overrides baseline",
                spec: "{privileges: {level: baseline, allowedHostPaths: [{pathPrefix: /etc/ssl/certs}]}}",
                mutate: |c| add_mount(c, "/etc/ssl/certs", "/etc/ssl/certs", json!(["rbind"])),
                want: &[],
            },
            Case {
                name: "runAsNonRoot alone",
                spec: "{privileges: {runAsNonRoot: true}}",
                mutate: |c| c["process"]["user"]["uid"] = json!(0),
                want: &["runAsNonRoot"],
            },
            Case {
                name: "runAsNonRoot: false overrides restricted",
                spec: "{privileges: {level: restricted, runAsNonRoot: false}}",
                mutate: |c| c["process"]["user"]["uid"] = json!(0),
                want: &[],
            },
            Case {
                name: "noNewPrivileges alone",
                spec: "{privileges: {noNewPrivileges: true}}",
                mutate: |c| c["process"]["noNewPrivileges"] = json!(false),
                want: &["noNewPrivileges"],
            },
            Case {
                name: "seccompRequired alone",
                spec: "{privileges: {seccompRequired: true}}",
                mutate: |c| {
                    c["linux"].as_object_mut().unwrap().remove("seccomp");
                },
                want: &["seccomp"],
            },
            Case {
                name: "readOnlyRootFilesystem alone: a writable root",
                spec: "{privileges: {readOnlyRootFilesystem: true}}",
                mutate: |c| c["root"]["readonly"] = json!(false),
                want: &["readOnlyRootFilesystem"],
            },
            Case {
                name: "readOnlyRootFilesystem is not part of restricted",
                spec: RESTRICTED,
                mutate: |c| c["root"]["readonly"] = json!(false),
                want: &[],
            },
            Case {
                name: "allowedSysctls alone with a prefix",
                spec: "{privileges: {allowedSysctls: [\"net.ipv4.tcp_*\"]}}",
                mutate: |c| {
                    c["linux"]["sysctl"] =
                        json!({"net.ipv4.tcp_keepalive_time": "60", "net.core.somaxconn": "1024"})
                },
                want: &["sysctls"],
            },
            Case {
                name: "allowedSysctls overrides baseline",
                spec: "{privileges: {level: baseline, allowedSysctls: [net.core.somaxconn]}}",
                mutate: |c| c["linux"]["sysctl"] = json!({"net.core.somaxconn": "1024"}),
                want: &[],
            },
            Case {
                name: "appArmor required: no profile",
                spec: "{privileges: {appArmor: required}}",
                mutate: |c| {
                    c["process"]
                        .as_object_mut()
                        .unwrap()
                        .remove("apparmorProfile");
                },
                want: &["appArmor"],
            },
            Case {
                name: "appArmor any overrides baseline",
                spec: "{privileges: {level: baseline, appArmor: any}}",
                mutate: |c| c["process"]["apparmorProfile"] = json!("unconfined"),
                want: &[],
            },
            Case {
                name: "selinux allowedTypes alone",
                spec: "{privileges: {selinux: {allowedTypes: [container_t]}}}",
                mutate: |c| {
                    c["process"]["selinuxLabel"] = json!("system_u:system_r:container_kvm_t:s0")
                },
                want: &["selinux"],
            },
            Case {
                name: "procMount Default alone",
                spec: "{privileges: {procMount: Default}}",
                mutate: |c| c["linux"]["readonlyPaths"] = json!([]),
                want: &["procMount"],
            },
            Case {
                name: "procMount Unmasked overrides baseline",
                spec: "{privileges: {level: baseline, procMount: Unmasked}}",
                mutate: |c| c["linux"]["readonlyPaths"] = json!([]),
                want: &[],
            },
        ]);
    }

    #[test]
    fn image_rules() {
        run(&[
            Case {
                name: "registry glob `*.gcr.io` allows eu.gcr.io",
                spec: "{images: {allowedRegistries: [\"*.gcr.io\"]}}",
                mutate: |c| set_image(c, "eu.gcr.io/proj/app:1.2"),
                want: &[],
            },
            Case {
                name: "registry glob `*.gcr.io` refuses docker.io",
                spec: "{images: {allowedRegistries: [\"*.gcr.io\"]}}",
                mutate: |c| set_image(c, "nginx:1.27"),
                want: &["image.registry"],
            },
            Case {
                name: "registry glob `*.gcr.io` refuses gcr.io itself",
                spec: "{images: {allowedRegistries: [\"*.gcr.io\"]}}",
                mutate: |c| set_image(c, "gcr.io/proj/app:1"),
                want: &["image.registry"],
            },
            Case {
                name: "registry with port matches exactly",
                spec: "{images: {allowedRegistries: [\"registry.example.com:5000\"]}}",
                mutate: |c| set_image(c, "registry.example.com:5000/shop/cart:2"),
                want: &[],
            },
            Case {
                name: "repository glob `*` allows one component",
                spec: "{images: {allowedRepositories: [\"registry.example.com/payments/*\"]}}",
                mutate: |_| {},
                want: &[],
            },
            Case {
                name: "repository glob `*` refuses a nested repository",
                spec: "{images: {allowedRepositories: [\"registry.example.com/payments/*\"]}}",
                mutate: |c| set_image(c, "registry.example.com/payments/team/processor:1"),
                want: &["image.repository"],
            },
            Case {
                name: "repository glob `**` allows a nested repository",
                spec: "{images: {allowedRepositories: [\"registry.example.com/payments/**\"]}}",
                mutate: |c| set_image(c, "registry.example.com/payments/team/processor:1"),
                want: &[],
            },
            Case {
                name: "repository names are normalised before matching",
                spec: "{images: {allowedRepositories: [docker.io/library/nginx]}}",
                mutate: |c| set_image(c, "nginx:1.27"),
                want: &[],
            },
            Case {
                name: "requireDigest refuses a tag",
                spec: "{images: {requireDigest: true}}",
                mutate: |c| set_image(c, "registry.example.com/payments/processor:1.4.2"),
                want: &["image.digest"],
            },
            Case {
                name: "requireDigest passes a digest",
                spec: "{images: {requireDigest: true}}",
                mutate: |_| {},
                want: &[],
            },
            Case {
                name: "deniedTags: an explicit `:latest`",
                spec: "{images: {deniedTags: [latest]}}",
                mutate: |c| set_image(c, "registry.example.com/payments/processor:latest"),
                want: &["image.deniedTag"],
            },
            Case {
                name: "deniedTags: no tag is the implicit `latest`",
                spec: "{images: {deniedTags: [latest]}}",
                mutate: |c| set_image(c, "busybox"),
                want: &["image.deniedTag"],
            },
            Case {
                name: "deniedTags: a digest-pinned `:latest` runs the digest",
                spec: "{images: {deniedTags: [latest]}}",
                mutate: |c| set_image(c, &format!("busybox:latest@{DIGEST}")),
                want: &[],
            },
            Case {
                name: "deniedTags: another tag passes",
                spec: "{images: {deniedTags: [latest, dev]}}",
                mutate: |c| set_image(c, "busybox:1.36"),
                want: &[],
            },
            Case {
                name: "digestsByIdentity: the pipeline's digest as processor passes",
                spec: DIGESTS_BY_SA,
                mutate: |_| {},
                want: &[],
            },
            Case {
                name: "digestsByIdentity: another digest as processor",
                spec: DIGESTS_BY_SA,
                mutate: |c| {
                    set_image(
                        c,
                        &format!("registry.example.com/payments/processor@{OTHER_DIGEST}"),
                    )
                },
                want: &["image.digestByIdentity"],
            },
            Case {
                name: "digestsByIdentity: a tag as processor",
                spec: DIGESTS_BY_SA,
                mutate: |c| set_image(c, "registry.example.com/payments/processor:1.4.2"),
                want: &["image.digestByIdentity"],
            },
            Case {
                name: "digestsByIdentity: another service account is not bound",
                spec: DIGESTS_BY_SA,
                mutate: |c| {
                    c["annotations"]["io.kubernetes.cri.sandbox-name"] = json!("unlisted");
                    c["annotations"]["palisade.dev/service-account"] = json!("reports");
                    set_image(c, "busybox:1");
                },
                want: &[],
            },
            Case {
                name: "digestsByIdentity: an unknown service account in the namespace fails closed",
                spec: DIGESTS_BY_SA,
                mutate: |c| {
                    c["annotations"]["io.kubernetes.cri.sandbox-name"] = json!("unlisted");
                    set_image(c, "busybox:1");
                },
                want: &["image.digestByIdentity"],
            },
            Case {
                name: "digestsByIdentity: another namespace is not bound",
                spec: DIGESTS_BY_SA,
                mutate: |c| {
                    c["annotations"]["io.kubernetes.cri.sandbox-namespace"] = json!("shop");
                    set_image(c, "busybox:1");
                },
                want: &[],
            },
            Case {
                name: "digestsByIdentity by labels: another digest",
                spec: DIGESTS_BY_LABELS,
                mutate: |c| {
                    set_image(
                        c,
                        &format!("registry.example.com/payments/processor@{OTHER_DIGEST}"),
                    )
                },
                want: &["image.digestByIdentity"],
            },
            Case {
                name: "no image annotation with image rules fails closed",
                spec: "{images: {deniedTags: [latest]}}",
                mutate: |c| {
                    c["annotations"]
                        .as_object_mut()
                        .unwrap()
                        .remove("io.kubernetes.cri.image-name");
                },
                want: &["image"],
            },
            Case {
                name: "an unparseable image reference fails closed",
                spec: "{images: {deniedTags: [latest]}}",
                mutate: |c| set_image(c, "Registry.example.com/Payments/X:1"),
                want: &["image"],
            },
            Case {
                name: "every violated control is listed together",
                spec: "{images: {allowedRegistries: [registry.example.com], requireDigest: true, deniedTags: [latest]}, privileges: {level: restricted}}",
                mutate: |c| {
                    set_image(c, "nginx");
                    drop_ns(c, "pid");
                    c["process"]["user"]["uid"] = json!(0);
                    c["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
                },
                want: &[
                    "image.registry",
                    "image.digest",
                    "image.deniedTag",
                    "capabilities",
                    "hostPID",
                    "runAsNonRoot",
                ],
            },
        ]);
    }

    const DIGESTS_BY_SA: &str = "{images: {digestsByIdentity: [{namespace: payments, serviceAccount: processor, digests: [\"sha256:4b1c9cf9d2d7a1b0e5f0d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2\"]}]}}";
    const DIGESTS_BY_LABELS: &str = "{images: {digestsByIdentity: [{namespace: payments, matchLabels: {app: processor}, digests: [\"sha256:4b1c9cf9d2d7a1b0e5f0d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2\"]}]}}";

    #[test]
    fn selectors_by_namespace_and_labels() {
        let root = |c: &mut Value| c["process"]["user"]["uid"] = json!(0);
        let rows: &[(&str, &str, fn(&mut Value), bool)] = &[
            (
                "an empty selector selects every container",
                "{}",
                |_| {},
                true,
            ),
            (
                "namespaces: the pod's namespace",
                "{namespaces: [shop, payments]}",
                |_| {},
                true,
            ),
            (
                "namespaces: another namespace",
                "{namespaces: [shop]}",
                |_| {},
                false,
            ),
            (
                "namespaces: an unknown namespace is not selected",
                "{namespaces: [payments]}",
                |c| {
                    c["annotations"] = json!({});
                },
                false,
            ),
            (
                "matchLabels from the inventory (containerd)",
                "{matchLabels: {app: processor}}",
                |_| {},
                true,
            ),
            (
                "matchLabels: a different value",
                "{matchLabels: {app: cart}}",
                |_| {},
                false,
            ),
            (
                "matchExpressions In",
                "{matchExpressions: [{key: tier, operator: In, values: [backend, batch]}]}",
                |_| {},
                true,
            ),
            (
                "matchExpressions NotIn",
                "{matchExpressions: [{key: tier, operator: NotIn, values: [backend]}]}",
                |_| {},
                false,
            ),
            (
                "matchExpressions Exists",
                "{matchExpressions: [{key: tier, operator: Exists}]}",
                |_| {},
                true,
            ),
            (
                "matchExpressions DoesNotExist",
                "{matchExpressions: [{key: tier, operator: DoesNotExist}]}",
                |_| {},
                false,
            ),
            (
                "palisade.dev/labels when the inventory has no such pod",
                "{matchLabels: {app: batch}}",
                |c| {
                    c["annotations"]["io.kubernetes.cri.sandbox-name"] = json!("batch-x1");
                    c["annotations"]["palisade.dev/labels"] = json!(r#"{"app":"batch"}"#);
                },
                true,
            ),
            (
                "the inventory comes before palisade.dev/labels",
                "{matchLabels: {app: batch}}",
                |c| {
                    c["annotations"]["palisade.dev/labels"] = json!(r#"{"app":"batch"}"#);
                },
                false,
            ),
        ];
        for (name, selector, mutate, selected) in rows {
            let mut config = containerd_config();
            root(&mut config);
            mutate(&mut config);
            let spec = format!("{{selector: {selector}, privileges: {{runAsNonRoot: true}}}}");
            let s = set(&spec);
            let d = decide_container(&s.container, &s.inventory, &request(config)).unwrap();
            assert_eq!(d.policies.len(), usize::from(*selected), "{name}: {d}");
            assert_eq!(!d.allowed, *selected, "{name}: {d}");
        }
    }

    #[test]
    fn no_selected_policy_allows() {
        let mut config = containerd_config();
        privileged(&mut config);
        let d = decide(
            "{selector: {namespaces: [shop]}, privileges: {level: restricted}}",
            config,
        );
        assert!(d.allowed && d.policies.is_empty() && d.violations.is_empty());
    }

    #[test]
    fn containerd_and_crio_annotations_give_the_same_subject() {
        let s = set(
            "{selector: {namespaces: [payments], matchLabels: {app: processor}}, images: {allowedRepositories: [\"registry.example.com/payments/*\"]}, privileges: {level: restricted}}",
        );
        let a =
            decide_container(&s.container, &s.inventory, &request(containerd_config())).unwrap();
        let b = decide_container(&s.container, &s.inventory, &request(crio_config())).unwrap();
        for d in [&a, &b] {
            assert!(d.allowed, "{d}");
            assert_eq!(d.policies, ["security/p"]);
            assert_eq!(d.subject.namespace.as_deref(), Some("payments"));
            assert_eq!(d.subject.pod.as_deref(), Some("processor-7d9f4"));
            assert_eq!(d.subject.container.as_deref(), Some("processor"));
            assert_eq!(d.subject.service_account.as_deref(), Some("processor"));
        }
        assert_eq!(a.subject.labels_from.as_deref(), Some("inventory"));
        assert_eq!(b.subject.labels_from.as_deref(), Some("cri-o"));
        // CRI-O's sandbox files are runtime-managed; a foreign one is a host path.
        let mut c = crio_config();
        c["mounts"][9]["source"] =
            json!("/run/containers/storage/overlay-containers/0badc0de/userdata/resolv.conf");
        let d = decide_container(&s.container, &s.inventory, &request(c)).unwrap();
        assert_eq!(controls(&d), ["hostPath"]);
    }

    #[test]
    fn sandbox_containers_are_checked_and_only_the_pause_image_is_exempt() {
        for (key, config) in [
            ("io.kubernetes.cri.container-type", containerd_config()),
            ("io.kubernetes.cri-o.ContainerType", crio_config()),
        ] {
            let mut c = config;
            c["annotations"][key] = json!("sandbox");
            let mut other = c.clone();
            c["process"]["args"] = json!(["/pause"]);
            set_image(&mut c, "registry.k8s.io/pause:3.10");
            // The pod's sysctls are in the sandbox's spec (containerd): `kernel.sem` is not
            // safe, and the sandbox is checked for it like any container.
            c["linux"]["sysctl"] = json!({"kernel.sem": "250 32000 100 128"});
            let d = decide(RESTRICTED, c.clone());
            assert_eq!(controls(&d), ["sysctls"], "{key}: {d}");
            c["linux"]["sysctl"] = json!({"net.ipv4.ping_group_range": "0 2147483647"});
            other["linux"]["sysctl"] = json!({"net.ipv4.ping_group_range": "0 2147483647"});
            let latest = "{images: {deniedTags: [\"3.10\"]}, privileges: {level: restricted}}";
            let d = decide(latest, c.clone());
            assert!(d.allowed, "{key}: {d}");
            assert_eq!(
                d.skipped.as_deref(),
                Some(
                    "sandbox container: image rules not checked (the pause image is the runtime's)"
                )
            );
            assert_eq!(d.policies, ["security/p"]);
            // The annotation does not skip the privilege checks.
            privileged(&mut c);
            let d = decide(RESTRICTED, c.clone());
            assert!(!d.allowed, "{key}: {d}");
            assert!(controls(&d).contains(&"capabilities"), "{key}: {d}");
            // A "sandbox" that runs something else has its image checked too.
            set_image(&mut other, "registry.k8s.io/pause:3.10");
            let d = decide(latest, other);
            assert_eq!(controls(&d), ["image.deniedTag"], "{key}: {d}");
        }
    }

    #[test]
    fn runc_spec_default_under_each_level() {
        let runc = |spec: &str| {
            let s = set(spec);
            let state = r#"{"ociVersion":"1.0.2-dev","id":"probe1","status":"creating","pid":12345,"bundle":"/work/bundle"}"#;
            let req = ContainerRequest::from_oci(state, &runc_spec_default().to_string()).unwrap();
            decide_container(&s.container, &s.inventory, &req).unwrap()
        };
        // runc applies no AppArmor profile when the spec names none.
        assert_eq!(controls(&runc(BASELINE)), ["appArmor"]);
        assert!(runc("{privileges: {level: baseline, appArmor: notUnconfined}}").allowed);
        let d = runc(RESTRICTED);
        assert_eq!(
            controls(&d),
            ["capabilities", "runAsNonRoot", "seccomp", "appArmor"]
        );
        assert_eq!(
            d.violations[0].message,
            "the container holds `CAP_AUDIT_WRITE`, `CAP_KILL` (in `process.capabilities`); allowed (level `restricted` or `allowedCapabilities`): `CAP_NET_BIND_SERVICE`"
        );
        // Without annotations there is no image: image rules fail closed.
        assert_eq!(
            controls(&runc("{images: {deniedTags: [latest]}}")),
            ["image"]
        );
    }

    #[test]
    fn messages_say_what_was_found_and_what_is_allowed() {
        let mut c = containerd_config();
        set_image(&mut c, "busybox");
        drop_ns(&mut c, "pid");
        add_mount(
            &mut c,
            "/var/run/docker.sock",
            "/var/run/docker.sock",
            json!(["rbind"]),
        );
        let d = decide(
            "{images: {deniedTags: [latest]}, privileges: {level: baseline}}",
            c,
        );
        let msgs: Vec<&str> = d.violations.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "image `docker.io/library/busybox:latest` uses tag `latest` (implicit: the reference has no tag); denied tags: `latest`",
                "the container shares the host's `pid` namespace (`pid` is not in `linux.namespaces`); `hostPID` is not allowed",
                "the container mounts host paths `/var/run/docker.sock` at `/var/run/docker.sock`; allowed host paths: none",
            ]
        );
        assert!(d.to_string().starts_with(&format!(
            "container `{CID}` denied\n  security/p [image.deniedTag]: "
        )));
    }

    #[test]
    fn unreadable_requests_are_errors() {
        let s = set(BASELINE);
        let mut c = crio_config();
        c["annotations"]["io.kubernetes.cri-o.Labels"] = json!("{not json");
        let err = decide_container(&s.container, &s.inventory, &request(c)).unwrap_err();
        assert!(
            err.starts_with("annotation `io.kubernetes.cri-o.Labels` is not a JSON object"),
            "{err}"
        );
        let mut c = containerd_config();
        c["annotations"]["palisade.dev/labels"] = json!("[1]");
        c["annotations"]["io.kubernetes.cri.sandbox-name"] = json!("unlisted");
        assert!(decide_container(&s.container, &s.inventory, &request(c)).is_err());
        let config = containerd_config().to_string();
        for state in [
            "",
            "{}",
            r#"{"id": 7, "status": "creating"}"#,
            r#"{"id": "", "status": "creating"}"#,
        ] {
            let res = ContainerRequest::from_oci(state, &config)
                .and_then(|r| decide_container(&s.container, &s.inventory, &r));
            assert!(res.is_err(), "state {state:?}");
        }
        assert!(
            ContainerRequest::from_oci(r#"{"id":"x"}"#, r#"{"process": {"user": {"uid": -1}}}"#)
                .is_err()
        );
    }

    #[test]
    fn runc_and_crun_states_are_read_tolerantly() {
        let config = containerd_config().to_string();
        for state in [
            r#"{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":4300,"bundle":"/b"}"#,
            r#"{"ociVersion":"1.0","id":"c1","pid":0,"root":"rootfs","bundle":"/","status":"starting","annotations":{}}"#,
            r#"{"ociVersion":"1.0.0","id":"c1","status":"created","pid":1,"bundle":"/b","extra":{"x":1}}"#,
        ] {
            let r = ContainerRequest::from_oci(state, &config).unwrap();
            assert_eq!(r.state.id, "c1");
        }
    }

    #[test]
    fn host_given_pod_and_image_come_first() {
        let s = set(DIGESTS_BY_SA);
        let mut r = request(containerd_config());
        r.annotations
            .insert(annotations::CRI_SANDBOX_NAME.into(), "unlisted".into());
        r.pod = Some(PodInfo {
            service_account: Some("processor".into()),
            ..PodInfo::default()
        });
        r.image = Some(ImageInfo {
            name: Some("registry.example.com/payments/processor:1.4.2".into()),
            digest: Some(DIGEST.into()),
        });
        let d = decide_container(&s.container, &s.inventory, &r).unwrap();
        assert!(d.allowed, "{d}");
        assert_eq!(
            d.subject.image.as_deref(),
            Some("registry.example.com/payments/processor:1.4.2")
        );
    }

    #[test]
    fn the_engine_decides_and_a_bundle_round_trips() {
        let s = set(RESTRICTED);
        let engine = crate::compile(&s, &crate::Options::default()).unwrap();
        let back = crate::decode_bundle(&crate::encode_bundle(&engine).unwrap()).unwrap();
        assert_eq!(back.container, s.container);
        let mut c = containerd_config();
        c["process"]["user"]["uid"] = json!(0);
        let d = back.decide_container(&request(c)).unwrap();
        assert_eq!(controls(&d), ["runAsNonRoot"]);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["violations"][0]["control"], "runAsNonRoot");
        assert_eq!(json["policies"][0], "security/p");
    }

    #[test]
    fn image_references_are_normalised() {
        let rows: &[(&str, &str, &str, Option<&str>, bool, Option<&str>)] = &[
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                true,
                None,
            ),
            (
                "nginx:1.27",
                "docker.io",
                "library/nginx",
                Some("1.27"),
                false,
                None,
            ),
            (
                "docker.io/nginx",
                "docker.io",
                "library/nginx",
                Some("latest"),
                true,
                None,
            ),
            (
                "index.docker.io/library/nginx:1",
                "docker.io",
                "library/nginx",
                Some("1"),
                false,
                None,
            ),
            (
                "opensuse/leap:15.3",
                "docker.io",
                "opensuse/leap",
                Some("15.3"),
                false,
                None,
            ),
            (
                "test.com:tag",
                "docker.io",
                "library/test.com",
                Some("tag"),
                false,
                None,
            ),
            (
                "localhost/app",
                "localhost",
                "app",
                Some("latest"),
                true,
                None,
            ),
            (
                "localhost:5000/team/app:v2",
                "localhost:5000",
                "team/app",
                Some("v2"),
                false,
                None,
            ),
            (
                "Registry.Example.com/shop/cart:1",
                "registry.example.com",
                "shop/cart",
                Some("1"),
                false,
                None,
            ),
            (
                "ghcr.io/org/app@sha256:4b1c9cf9d2d7a1b0e5f0d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2",
                "ghcr.io",
                "org/app",
                None,
                false,
                Some(DIGEST),
            ),
            (
                "ghcr.io/org/app:1.0@sha256:4b1c9cf9d2d7a1b0e5f0d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2",
                "ghcr.io",
                "org/app",
                Some("1.0"),
                false,
                Some(DIGEST),
            ),
        ];
        for (input, registry, repository, tag, implicit, digest) in rows {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (
                    r.registry.as_str(),
                    r.repository.as_str(),
                    r.tag.as_deref(),
                    r.implicit_tag,
                    r.digest.as_deref()
                ),
                (*registry, *repository, *tag, *implicit, *digest),
                "{input}"
            );
        }
        for bad in [
            "",
            "UPPER/case",
            "app:",
            "app@sha256:short",
            "a//b",
            "app:-x",
            "-app",
            "ghcr.io/",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ImageRef::parse("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            ImageRef::parse(&format!("app@{DIGEST}"))
                .unwrap()
                .to_string(),
            format!("docker.io/library/app@{DIGEST}")
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        let rows: &[(&str, &str, &str, &str)] = &[
            (
                "unknown spec field",
                "{privilege: {}}",
                "unknown field `privilege`",
                "spec.privilege",
            ),
            (
                "unknown privileges field",
                "{privileges: {hostNetwrok: true}}",
                "unknown field `hostNetwrok`",
                "spec.privileges.hostNetwrok",
            ),
            (
                "bad level",
                "{privileges: {level: strict}}",
                "unknown level `strict`",
                "spec.privileges.level",
            ),
            (
                "unknown capability",
                "{privileges: {allowedCapabilities: [NET_BIND_SERVICE, SYS_ADMN]}}",
                "unknown capability `SYS_ADMN`",
                "spec.privileges.allowedCapabilities[1]",
            ),
            (
                "ALL is not a capability",
                "{privileges: {allowedCapabilities: [ALL]}}",
                "unknown capability `ALL`",
                "spec.privileges.allowedCapabilities[0]",
            ),
            (
                "bool expected",
                "{privileges: {hostPID: maybe}}",
                "expected `true` or `false`, found `maybe`",
                "spec.privileges.hostPID",
            ),
            (
                "relative host path",
                "{privileges: {allowedHostPaths: [{pathPrefix: var/log}]}}",
                "`var/log` is not an absolute path",
                "spec.privileges.allowedHostPaths[0].pathPrefix",
            ),
            (
                "host path needs pathPrefix",
                "{privileges: {allowedHostPaths: [{readOnly: true}]}}",
                "missing required field `pathPrefix`",
                "spec.privileges.allowedHostPaths[0]",
            ),
            (
                "bad sysctl",
                "{privileges: {allowedSysctls: [\"net.*.x\"]}}",
                "invalid sysctl `net.*.x`",
                "spec.privileges.allowedSysctls[0]",
            ),
            (
                "bad appArmor",
                "{privileges: {appArmor: unconfined}}",
                "unknown appArmor setting `unconfined`",
                "spec.privileges.appArmor",
            ),
            (
                "bad selinux type",
                "{privileges: {selinux: {allowedTypes: [\"container_t:s0\"]}}}",
                "invalid SELinux type `container_t:s0`",
                "spec.privileges.selinux.allowedTypes[0]",
            ),
            (
                "bad procMount",
                "{privileges: {procMount: default}}",
                "unknown procMount `default`",
                "spec.privileges.procMount",
            ),
            (
                "registry with a path",
                "{images: {allowedRegistries: [docker.io/library]}}",
                "registry `docker.io/library` contains `/`",
                "spec.images.allowedRegistries[0]",
            ),
            (
                "repository without registry",
                "{images: {allowedRepositories: [nginx]}}",
                "repository `nginx` has no registry",
                "spec.images.allowedRepositories[0]",
            ),
            (
                "repository with a tag",
                "{images: {allowedRepositories: [\"docker.io/library/nginx:1\"]}}",
                "repository `docker.io/library/nginx:1` has a tag or digest",
                "spec.images.allowedRepositories[0]",
            ),
            (
                "bad denied tag",
                "{images: {deniedTags: [\"-x\"]}}",
                "invalid tag `-x`",
                "spec.images.deniedTags[0]",
            ),
            (
                "bad digest",
                "{images: {digestsByIdentity: [{namespace: a, serviceAccount: b, digests: [\"sha256:XYZ\"]}]}}",
                "invalid digest `sha256:XYZ`",
                "spec.images.digestsByIdentity[0].digests[0]",
            ),
            (
                "identity needs one key",
                "{images: {digestsByIdentity: [{namespace: a, digests: []}]}}",
                "an identity needs exactly one of `serviceAccount` and `matchLabels`",
                "spec.images.digestsByIdentity[0]",
            ),
            (
                "empty digests",
                "{images: {digestsByIdentity: [{namespace: a, serviceAccount: b, digests: []}]}}",
                "`digests` is empty: no image could run as this identity",
                "spec.images.digestsByIdentity[0].digests",
            ),
            (
                "selector operator",
                "{selector: {matchExpressions: [{key: a, operator: in, values: [b]}]}}",
                "unknown operator `in`",
                "spec.selector.matchExpressions[0].operator",
            ),
            (
                "selector In without values",
                "{selector: {matchExpressions: [{key: a, operator: In}]}}",
                "operator `In` needs at least one value in `values`",
                "spec.selector.matchExpressions[0]",
            ),
        ];
        for (name, spec, message, path) in rows {
            let text = format!(
                "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {{name: p}}\nspec: {spec}\n"
            );
            let errs = load(&[SourceFile::new("p.yaml", text)]).expect_err(name);
            let d = &errs.diagnostics[0];
            assert_eq!(d.message, *message, "{name}");
            assert_eq!(d.path.as_deref(), Some(*path), "{name}");
            assert_eq!(
                d.document.as_deref(),
                Some("ContainerPolicy default/p"),
                "{name}"
            );
            assert_eq!(d.location.as_ref().unwrap().line, 4, "{name}");
        }
        let missing = load(&[SourceFile::new(
            "p.yaml",
            "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {name: p}\n",
        )])
        .unwrap_err();
        assert_eq!(
            missing.diagnostics[0].message,
            "missing required field `spec`"
        );
    }

    #[test]
    fn levels_resolve_to_controls_and_overrides_stick() {
        let s = set(
            "{privileges: {level: restricted, hostPID: true, allowedCapabilities: [CAP_CHOWN]}}",
        );
        let p = &s.container[0].privileges;
        assert_eq!(p.level, Level::Restricted);
        assert!(p.host_pid && !p.host_network && !p.host_ipc);
        assert_eq!(
            p.allowed_capabilities.as_deref(),
            Some(&["CHOWN".to_string()][..])
        );
        assert!(p.run_as_non_root && p.no_new_privileges && p.seccomp_required);
        assert_eq!(
            Privileges::default(),
            Privileges::for_level(Level::Privileged)
        );
        assert_eq!(s.container[0].origin, "p.yaml:1");
    }
}
