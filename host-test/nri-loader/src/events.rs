//! Recorded NRI `CreateContainer` events: JSON files, each a request in protobuf's canonical
//! JSON mapping (lowerCamelCase field names, enums by name, as `protojson` prints NRI's
//! messages) and the verdict expected of it.
//!
//! ```json
//! {
//!   "description": "what this container is and why it is allowed or denied",
//!   "request": {"pod": {"name": "web-0", "namespace": "shop", ...},
//!               "container": {"id": "…", "image": {"name": "…"}, "linux": {...}, ...}},
//!   "expect": {"allowed": false, "violations": ["default/baseline hostPID"]}
//! }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::proto;

/// One recorded event with its expectation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedEvent {
    /// What the container is and why the verdict.
    pub description: String,
    /// The request NRI sends.
    pub request: CreateContainer,
    /// The expected verdict.
    pub expect: Expect,
}

/// The expected verdict.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Whether the container may be created.
    pub allowed: bool,
    /// Each violation as `<policy> <control>`, in decision order.
    #[serde(default)]
    pub violations: Vec<String>,
}

/// `CreateContainerRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    /// `pod`.
    #[serde(default)]
    pub pod: Option<Pod>,
    /// `container`.
    #[serde(default)]
    pub container: Option<Container>,
}

/// `PodSandbox`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Pod {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `uid`.
    pub uid: String,
    /// `namespace`.
    pub namespace: String,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `runtimeHandler` (not sent on: unused by the plugin).
    pub runtime_handler: String,
}

/// `Container`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Container {
    /// `id`.
    pub id: String,
    /// `podSandboxId`.
    pub pod_sandbox_id: String,
    /// `name`.
    pub name: String,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `args`.
    pub args: Vec<String>,
    /// `env`.
    pub env: Vec<String>,
    /// `mounts`.
    pub mounts: Vec<Mount>,
    /// `linux`.
    pub linux: Option<Linux>,
    /// `user`.
    pub user: Option<User>,
    /// `image`.
    pub image: Option<Image>,
}

/// `Mount`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mount {
    /// `destination`.
    pub destination: String,
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `source`.
    pub source: String,
    /// `options`.
    pub options: Vec<String>,
}

/// `LinuxContainer`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Linux {
    /// `namespaces`.
    pub namespaces: Vec<Namespace>,
    /// `devices`.
    pub devices: Vec<Device>,
    /// `resources` (only `devices`).
    pub resources: Option<Resources>,
    /// `seccompProfile`.
    pub seccomp_profile: Option<SeccompProfile>,
    /// `seccompPolicy`.
    pub seccomp_policy: Option<SeccompPolicy>,
    /// `sysctl`.
    pub sysctl: BTreeMap<String, String>,
}

/// `LinuxResources` (only `devices`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// `devices`: the device cgroup rules.
    pub devices: Vec<DeviceRule>,
}

/// `LinuxDeviceCgroup`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceRule {
    /// `allow`.
    pub allow: bool,
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `major` (`{"value": n}`).
    pub major: Option<OptionalInt>,
    /// `minor` (`{"value": n}`).
    pub minor: Option<OptionalInt>,
    /// `access`.
    pub access: String,
}

/// `OptionalInt64`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptionalInt {
    /// `value`.
    pub value: i64,
}

/// `LinuxSeccomp`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SeccompPolicy {
    /// `defaultAction`.
    pub default_action: String,
    /// `architectures`.
    pub architectures: Vec<String>,
    /// `syscalls`.
    pub syscalls: Vec<Syscall>,
}

/// `LinuxSyscall`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Syscall {
    /// `names`.
    pub names: Vec<String>,
    /// `action`.
    pub action: String,
    /// `args`.
    pub args: Vec<SyscallArg>,
}

/// `LinuxSeccompArg`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SyscallArg {
    /// `index`.
    pub index: u32,
    /// `value`.
    pub value: u64,
    /// `valueTwo`.
    pub value_two: u64,
    /// `op`.
    pub op: String,
}

/// `LinuxNamespace`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Namespace {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `path`.
    pub path: String,
}

/// `LinuxDevice`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Device {
    /// `path`.
    pub path: String,
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `major`.
    pub major: i64,
    /// `minor`.
    pub minor: i64,
}

/// `SecurityProfile`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SeccompProfile {
    /// `RUNTIME_DEFAULT`, `UNCONFINED`, `LOCALHOST`.
    pub profile_type: String,
    /// `localhostRef`.
    pub localhost_ref: String,
}

/// `User`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct User {
    /// `uid`.
    pub uid: u32,
    /// `gid`.
    pub gid: u32,
    /// `additionalGids`.
    pub additional_gids: Vec<u32>,
}

/// `Image`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Image {
    /// `name`.
    pub name: String,
    /// `digest`.
    pub digest: String,
    /// `configDigest`.
    pub config_digest: String,
}

impl CreateContainer {
    /// The protobuf message NRI would send.
    pub fn to_proto(&self) -> Result<proto::CreateContainerRequest, String> {
        let pod = self.pod.as_ref().map(|p| proto::PodSandbox {
            id: p.id.clone(),
            name: p.name.clone(),
            uid: p.uid.clone(),
            namespace: p.namespace.clone(),
            labels: p.labels.clone(),
            annotations: p.annotations.clone(),
        });
        let container = match &self.container {
            None => None,
            Some(c) => Some(proto::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.pod_sandbox_id.clone(),
                name: c.name.clone(),
                state: 0,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                args: c.args.clone(),
                env: c.env.clone(),
                mounts: c
                    .mounts
                    .iter()
                    .map(|m| proto::Mount {
                        destination: m.destination.clone(),
                        r#type: m.kind.clone(),
                        source: m.source.clone(),
                        options: m.options.clone(),
                    })
                    .collect(),
                linux: match &c.linux {
                    None => None,
                    Some(l) => Some(proto::LinuxContainer {
                        namespaces: l
                            .namespaces
                            .iter()
                            .map(|n| proto::LinuxNamespace {
                                r#type: n.kind.clone(),
                                path: n.path.clone(),
                            })
                            .collect(),
                        devices: l
                            .devices
                            .iter()
                            .map(|d| proto::LinuxDevice {
                                path: d.path.clone(),
                                r#type: d.kind.clone(),
                                major: d.major,
                                minor: d.minor,
                            })
                            .collect(),
                        resources: l.resources.as_ref().map(|r| proto::LinuxResources {
                            devices: r
                                .devices
                                .iter()
                                .map(|d| proto::LinuxDeviceCgroup {
                                    allow: d.allow,
                                    r#type: d.kind.clone(),
                                    major: d
                                        .major
                                        .as_ref()
                                        .map(|m| proto::OptionalInt64 { value: m.value }),
                                    minor: d
                                        .minor
                                        .as_ref()
                                        .map(|m| proto::OptionalInt64 { value: m.value }),
                                    access: d.access.clone(),
                                })
                                .collect(),
                        }),
                        seccomp_policy: l.seccomp_policy.as_ref().map(|p| proto::LinuxSeccomp {
                            default_action: p.default_action.clone(),
                            architectures: p.architectures.clone(),
                            syscalls: p
                                .syscalls
                                .iter()
                                .map(|s| proto::LinuxSyscall {
                                    names: s.names.clone(),
                                    action: s.action.clone(),
                                    args: s
                                        .args
                                        .iter()
                                        .map(|a| proto::LinuxSeccompArg {
                                            index: a.index,
                                            value: a.value,
                                            value_two: a.value_two,
                                            op: a.op.clone(),
                                        })
                                        .collect(),
                                })
                                .collect(),
                        }),
                        seccomp_profile: match &l.seccomp_profile {
                            None => None,
                            Some(s) => Some(proto::SecurityProfile {
                                profile_type: profile_type(&s.profile_type)? as i32,
                                localhost_ref: s.localhost_ref.clone(),
                            }),
                        },
                        sysctl: l.sysctl.clone(),
                    }),
                },
                user: c.user.as_ref().map(|u| proto::User {
                    uid: u.uid,
                    gid: u.gid,
                    additional_gids: u.additional_gids.clone(),
                }),
                image: c.image.as_ref().map(|i| proto::Image {
                    name: i.name.clone(),
                    digest: i.digest.clone(),
                    config_digest: i.config_digest.clone(),
                }),
            }),
        };
        Ok(proto::CreateContainerRequest { pod, container })
    }
}

fn profile_type(name: &str) -> Result<proto::ProfileType, String> {
    match name {
        "RUNTIME_DEFAULT" | "" => Ok(proto::ProfileType::RuntimeDefault),
        "UNCONFINED" => Ok(proto::ProfileType::Unconfined),
        "LOCALHOST" => Ok(proto::ProfileType::Localhost),
        other => Err(format!("unknown seccomp profileType `{other}`")),
    }
}

/// Reads every `*.json` in a directory, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<(String, RecordedEvent)>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let event: RecordedEvent =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        out.push((name, event));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
