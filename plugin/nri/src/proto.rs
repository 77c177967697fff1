//! The subset of NRI's protobuf API (`nri.pkg.api.v1alpha1`) the plugin and the test loader
//! use, as `prost` messages.
//!
//! Field names and tag numbers follow `pkg/api/api.proto` of containerd/nri v0.12.2 (vendored,
//! unmodified, in `proto/api.proto`; Apache-2.0, Copyright The containerd Authors). Hand-written
//! rather than generated: see `proto/README.md`. Fields left out are skipped when decoding, as
//! protobuf requires, so NRI's full messages decode into these.

use std::collections::BTreeMap;

/// `ConfigureRequest`: the plugin's configuration and the runtime that loads it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigureRequest {
    /// Plugin-specific data: the content of `/etc/nri/conf.d/NN-name.conf` (or `name.conf`).
    #[prost(string, tag = "1")]
    pub config: String,
    /// `containerd`, `cri-o`, …
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    /// The runtime's version.
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    /// Registration timeout, milliseconds.
    #[prost(int64, tag = "4")]
    pub registration_timeout: i64,
    /// Request timeout, milliseconds.
    #[prost(int64, tag = "5")]
    pub request_timeout: i64,
    /// `NRI_version`: the NRI module version the runtime uses.
    #[prost(string, tag = "6")]
    pub nri_version: String,
}

/// `ConfigureResponse`: the events the plugin subscribes to.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigureResponse {
    /// A bit mask: bit `event - 1` for each [`Event`]; 0 means every event.
    #[prost(int32, tag = "2")]
    pub events: i32,
}

/// `SynchronizeRequest`: the pods and containers the runtime already has.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SynchronizeRequest {
    /// Pods.
    #[prost(message, repeated, tag = "1")]
    pub pods: Vec<PodSandbox>,
    /// Containers.
    #[prost(message, repeated, tag = "2")]
    pub containers: Vec<Container>,
    /// More pods and containers follow in another message.
    #[prost(bool, tag = "3")]
    pub more: bool,
}

/// `SynchronizeResponse` (its `update` field, tag 1, is never set by this plugin).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SynchronizeResponse {
    /// Must echo the request's `more`, or NRI closes the plugin ("does not handle split sync
    /// requests", `pkg/adaptation/plugin.go`).
    #[prost(bool, tag = "2")]
    pub more: bool,
}

/// `Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `CreateContainerRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    /// The pod of the container.
    #[prost(message, optional, tag = "1")]
    pub pod: Option<PodSandbox>,
    /// The container being created.
    #[prost(message, optional, tag = "2")]
    pub container: Option<Container>,
}

/// `CreateContainerResponse` (`update`, tag 2, and `evict`, tag 3, are never set).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    /// Adjustments to the container being created.
    #[prost(message, optional, tag = "1")]
    pub adjust: Option<ContainerAdjustment>,
}

/// `ContainerAdjustment` (only `annotations`; tags 3–9 are never set).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerAdjustment {
    /// Annotations to add (a key prefixed `-` removes one, NRI's convention).
    #[prost(btree_map = "string, string", tag = "2")]
    pub annotations: BTreeMap<String, String>,
}

/// `ValidateContainerAdjustmentResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValidateContainerAdjustmentResponse {
    /// Reject the adjustments (and so the container).
    #[prost(bool, tag = "1")]
    pub reject: bool,
    /// Why.
    #[prost(string, tag = "2")]
    pub reason: String,
}

/// `PodSandbox` (fields 7–10 — runtime handler, linux, pid, ips — unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Pod name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Pod uid.
    #[prost(string, tag = "3")]
    pub uid: String,
    /// Pod namespace.
    #[prost(string, tag = "4")]
    pub namespace: String,
    /// Pod labels.
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
    /// Pod annotations.
    #[prost(btree_map = "string, string", tag = "6")]
    pub annotations: BTreeMap<String, String>,
}

/// `Container` (hooks, pid, rlimits, timestamps, exit status and CDI devices unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Its pod's sandbox id.
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    /// Container name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// `ContainerState`.
    #[prost(int32, tag = "4")]
    pub state: i32,
    /// Container labels.
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
    /// Container annotations (the OCI spec's, so containerd's `io.kubernetes.cri.*`).
    #[prost(btree_map = "string, string", tag = "6")]
    pub annotations: BTreeMap<String, String>,
    /// Process arguments.
    #[prost(string, repeated, tag = "7")]
    pub args: Vec<String>,
    /// Environment, `K=V`.
    #[prost(string, repeated, tag = "8")]
    pub env: Vec<String>,
    /// Mounts.
    #[prost(message, repeated, tag = "9")]
    pub mounts: Vec<Mount>,
    /// Linux specifics.
    #[prost(message, optional, tag = "11")]
    pub linux: Option<LinuxContainer>,
    /// The process user (NRI v0.11+; absent when the runtime does not fill it).
    #[prost(message, optional, tag = "21")]
    pub user: Option<User>,
    /// The image (NRI v0.12 API; absent when the runtime does not fill it).
    #[prost(message, optional, tag = "22")]
    pub image: Option<Image>,
}

/// `Mount`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mount {
    /// Destination in the container.
    #[prost(string, tag = "1")]
    pub destination: String,
    /// `bind`, `tmpfs`, …
    #[prost(string, tag = "2")]
    pub r#type: String,
    /// Source (a host path for bind mounts).
    #[prost(string, tag = "3")]
    pub source: String,
    /// Options (`rbind`, `ro`, …).
    #[prost(string, repeated, tag = "4")]
    pub options: Vec<String>,
}

/// `LinuxContainer` (cgroups, I/O priority, net devices, scheduler and RDT unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainer {
    /// Namespaces the runtime creates or joins.
    #[prost(message, repeated, tag = "1")]
    pub namespaces: Vec<LinuxNamespace>,
    /// Device nodes.
    #[prost(message, repeated, tag = "2")]
    pub devices: Vec<LinuxDevice>,
    /// Resources (only the device cgroup rules are read).
    #[prost(message, optional, tag = "3")]
    pub resources: Option<LinuxResources>,
    /// The seccomp profile as requested (NRI v0.10+).
    #[prost(message, optional, tag = "7")]
    pub seccomp_profile: Option<SecurityProfile>,
    /// The seccomp filter the runtime will install, as in the OCI spec (NRI v0.10+).
    #[prost(message, optional, tag = "8")]
    pub seccomp_policy: Option<LinuxSeccomp>,
    /// Sysctls.
    #[prost(btree_map = "string, string", tag = "9")]
    pub sysctl: BTreeMap<String, String>,
}

/// `LinuxNamespace`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxNamespace {
    /// `pid`, `network`, `ipc`, `uts`, `mount`, `user`, `cgroup`.
    #[prost(string, tag = "1")]
    pub r#type: String,
    /// Join this namespace instead of creating one.
    #[prost(string, tag = "2")]
    pub path: String,
}

/// `LinuxDevice` (file mode, uid and gid unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxDevice {
    /// Device path in the container.
    #[prost(string, tag = "1")]
    pub path: String,
    /// `c`, `b`, `p`.
    #[prost(string, tag = "2")]
    pub r#type: String,
    /// Major number.
    #[prost(int64, tag = "3")]
    pub major: i64,
    /// Minor number.
    #[prost(int64, tag = "4")]
    pub minor: i64,
}

/// `LinuxResources` (memory, CPU, hugepages, classes, unified and pids unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxResources {
    /// The device cgroup rules, in order ("for NRI v1 emulation" in `api.proto`).
    #[prost(message, repeated, tag = "7")]
    pub devices: Vec<LinuxDeviceCgroup>,
}

/// `LinuxDeviceCgroup`: one device cgroup rule.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxDeviceCgroup {
    /// Allow (or deny).
    #[prost(bool, tag = "1")]
    pub allow: bool,
    /// `a`, `b`, `c`.
    #[prost(string, tag = "2")]
    pub r#type: String,
    /// Major number; absent: any.
    #[prost(message, optional, tag = "3")]
    pub major: Option<OptionalInt64>,
    /// Minor number; absent: any.
    #[prost(message, optional, tag = "4")]
    pub minor: Option<OptionalInt64>,
    /// Some of `r`, `w`, `m`.
    #[prost(string, tag = "5")]
    pub access: String,
}

/// `OptionalInt64`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OptionalInt64 {
    /// The value.
    #[prost(int64, tag = "1")]
    pub value: i64,
}

/// `LinuxSeccomp`: the OCI seccomp filter (flags, listener and default errno unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSeccomp {
    /// `defaultAction`.
    #[prost(string, tag = "1")]
    pub default_action: String,
    /// `architectures`.
    #[prost(string, repeated, tag = "3")]
    pub architectures: Vec<String>,
    /// `syscalls`.
    #[prost(message, repeated, tag = "7")]
    pub syscalls: Vec<LinuxSyscall>,
}

/// `LinuxSyscall`: one seccomp rule (`errno_ret` unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSyscall {
    /// Syscall names.
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    /// `SCMP_ACT_…`.
    #[prost(string, tag = "2")]
    pub action: String,
    /// Argument conditions (only their number matters here).
    #[prost(message, repeated, tag = "4")]
    pub args: Vec<LinuxSeccompArg>,
}

/// `LinuxSeccompArg`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSeccompArg {
    /// Argument index.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    /// Value.
    #[prost(uint64, tag = "2")]
    pub value: u64,
    /// Second value (masked compare).
    #[prost(uint64, tag = "3")]
    pub value_two: u64,
    /// `SCMP_CMP_…`.
    #[prost(string, tag = "4")]
    pub op: String,
}

/// `SecurityProfile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityProfile {
    /// [`ProfileType`].
    #[prost(enumeration = "ProfileType", tag = "1")]
    pub profile_type: i32,
    /// The profile's path when `LOCALHOST`.
    #[prost(string, tag = "2")]
    pub localhost_ref: String,
}

/// `SecurityProfile.ProfileType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ProfileType {
    /// The runtime's default profile.
    RuntimeDefault = 0,
    /// No profile.
    Unconfined = 1,
    /// A profile file on the node.
    Localhost = 2,
}

/// `User`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct User {
    /// User id.
    #[prost(uint32, tag = "1")]
    pub uid: u32,
    /// Group id.
    #[prost(uint32, tag = "2")]
    pub gid: u32,
    /// Supplementary groups.
    #[prost(uint32, repeated, tag = "3")]
    pub additional_gids: Vec<u32>,
}

/// `Image`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// The reference, `registry.k8s.io/pause:3.10`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The index or manifest digest, `sha256:…`.
    #[prost(string, tag = "2")]
    pub digest: String,
    /// The platform-specific config digest.
    #[prost(string, tag = "3")]
    pub config_digest: String,
}

/// `LogRequest`: the argument of the host function `env.log`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRequest {
    /// The message.
    #[prost(string, tag = "1")]
    pub msg: String,
    /// [`LogLevel`].
    #[prost(enumeration = "LogLevel", tag = "2")]
    pub level: i32,
}

/// `LogRequest.Level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LogLevel {
    /// Logged at debug level by NRI.
    Unspecified = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warning.
    Warn = 3,
    /// Error.
    Error = 4,
}

/// NRI's `Event` numbers (subscription bit = `1 << (event - 1)`, `pkg/api/event.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Event {
    /// `CREATE_CONTAINER`.
    CreateContainer = 4,
}

impl Event {
    /// This event's bit in `ConfigureResponse.events`.
    pub const fn mask(self) -> i32 {
        1 << (self as i32 - 1)
    }
}
