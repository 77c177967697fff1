//! An NRI `CreateContainerRequest` → the engine's [`ContainerRequest`].
//!
//! NRI's `Container` is not the OCI `config.json`: it carries the pod (namespace, name, uid,
//! labels), the image, the namespaces, the mounts, the device nodes and cgroup rules, the
//! container's sysctls, the seccomp profile as requested and the filter itself (NRI v0.10+),
//! and (NRI v0.11+, where the runtime fills it) the user — but **not** the capabilities,
//! `noNewPrivileges`, the root filesystem's read-only flag, the AppArmor and SELinux labels,
//! the masked `/proc` paths, or the pod's sysctls (containerd writes those into the
//! sandbox's spec, and NRI's `PodSandbox` has none) (`message Container`,
//! `message LinuxContainer`, `message PodSandbox` in `pkg/api/api.proto` v0.12.2). The
//! conversion maps what NRI shows faithfully and, for what it cannot show, fills the request
//! with evidence that passes the control and names the control in [`Converted::unseen`]; the
//! plugin reports those as unverified on every decision. Enforce them where `config.json` is
//! visible: Palisade's OCI hook. `docs/container-policy.md` has the same table per class.
//!
//! | engine control | NRI evidence | when absent |
//! |---|---|---|
//! | selector (namespace, labels) | `pod.namespace`, `pod.labels` | annotations |
//! | image rules | `container.image.name`/`digest` | `io.kubernetes.cri.image-name` annotation |
//! | `hostNetwork`/`hostPID`/`hostIPC` | `container.linux.namespaces` | — (absent = host's) |
//! | `allowedHostPaths` | `container.mounts` | — |
//! | `kernelMounts` (extra `proc`, writable `sysfs`) | `container.mounts` | — |
//! | `devices` | `container.linux.devices`, `container.linux.resources.devices` | no rules: containerd's defaults stand in, unseen |
//! | `allowedSysctls` | `container.linux.sysctl` (the container's own) | pod sysctls: unseen |
//! | `runAsNonRoot` | `container.user.uid` | uid 0 (fail closed) |
//! | `seccompRequired` | `container.linux.seccomp_policy` (the filter, judged as in `config.json`); else `seccomp_profile`: `RUNTIME_DEFAULT` a filter, `LOCALHOST` unseen, `UNCONFINED` none | no profile (fail closed) |
//! | `capabilities`, `noNewPrivileges`, `readOnlyRootFilesystem`, `procMount`, `appArmor`, `selinux` | none | unseen |

use std::collections::BTreeMap;

use palisade_engine::container::host::{
    HostFacts, NamespaceFact, SandboxFact, spelled_host_namespace,
};
use palisade_engine::container::{
    ContainerRequest, DEFAULT_DEVICES, DevicePattern, ImageInfo, OciConfig, OciDevice,
    OciDeviceCgroup, OciLinux, OciMount, OciNamespace, OciProcess, OciResources, OciRoot, OciState,
    OciUser, PodInfo, annotations,
};

use crate::proto::{CreateContainerRequest, LinuxSeccomp, ProfileType};

/// The controls NRI's `Container` gives no evidence for, always listed as unseen (`sysctls`:
/// the pod's, which live in the sandbox's spec; the container's own are checked).
pub const NEVER_SEEN: [&str; 7] = [
    "capabilities",
    "noNewPrivileges",
    "readOnlyRootFilesystem",
    "procMount",
    "appArmor",
    "selinux",
    "sysctls",
];

/// What stands in `linux.maskedPaths` and `linux.readonlyPaths` for the masked `/proc` NRI
/// does not show: `/`, which covers every path any `procMountPaths` preset requires.
pub const UNSEEN_BY_NRI: &str = "/";

/// What stands in `process.apparmorProfile`, which NRI does not show.
pub const UNSEEN_PROFILE: &str = "(not visible through NRI)";

/// A converted request and what NRI could not show about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The request the engine decides.
    pub request: ContainerRequest,
    /// Controls decided on stand-in evidence because NRI does not carry theirs.
    pub unseen: Vec<&'static str>,
}

/// Why a request cannot be converted (the plugin denies then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// No `container` in the request.
    #[error("the CreateContainer request has no `container`")]
    NoContainer,
    /// An empty container id.
    #[error("the CreateContainer request's container has an empty `id`")]
    NoId,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl TryFrom<&CreateContainerRequest> for Converted {
    type Error = ConvertError;

    fn try_from(req: &CreateContainerRequest) -> Result<Self, Self::Error> {
        let c = req.container.as_ref().ok_or(ConvertError::NoContainer)?;
        if c.id.is_empty() {
            return Err(ConvertError::NoId);
        }
        let mut unseen: Vec<&'static str> = NEVER_SEEN.to_vec();
        let linux = c.linux.clone().unwrap_or_default();

        // The filter itself when NRI gives it; else what the profile type says: the runtime's
        // default is an allow-list (a blocking default action stands in for it), a Localhost
        // profile's content is unseen.
        let stand_in = |kind: &str| serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "palisade.dev/nri-stand-in": kind});
        let seccomp = match (
            linux.seccomp_policy.as_ref(),
            linux.seccomp_profile.as_ref(),
        ) {
            (Some(policy), _) => Some(seccomp_json(policy)),
            (None, None) => {
                unseen.push("seccomp");
                None
            }
            (None, Some(p)) => match ProfileType::try_from(p.profile_type) {
                Ok(ProfileType::Unconfined) => None,
                Ok(ProfileType::RuntimeDefault) => Some(stand_in("RUNTIME_DEFAULT")),
                Ok(ProfileType::Localhost) => {
                    unseen.push("seccomp");
                    Some(stand_in("LOCALHOST"))
                }
                // A profile type this build does not know is not assumed to confine.
                Err(_) => None,
            },
        };
        // Device cgroup rules: when the runtime does not fill them, containerd's defaults
        // (deny all, then the default devices) stand in and the control is unseen; the
        // device nodes are always checked.
        let rules = linux
            .resources
            .as_ref()
            .map(|r| r.devices.as_slice())
            .unwrap_or_default();
        let device_rules = if rules.is_empty() {
            unseen.push("devices");
            default_device_rules()
        } else {
            rules
                .iter()
                .map(|d| OciDeviceCgroup {
                    allow: d.allow,
                    kind: non_empty(&d.r#type),
                    major: d.major.as_ref().map(|m| m.value),
                    minor: d.minor.as_ref().map(|m| m.value),
                    access: non_empty(&d.access),
                })
                .collect()
        };
        let user = match c.user.as_ref() {
            Some(u) => Some(OciUser {
                uid: u.uid,
                gid: u.gid,
            }),
            None => {
                unseen.push("runAsNonRoot");
                None
            }
        };

        let config = OciConfig {
            process: Some(OciProcess {
                user,
                args: c.args.clone(),
                capabilities: None,
                no_new_privileges: Some(true),
                apparmor_profile: Some(UNSEEN_PROFILE.to_string()),
                selinux_label: None,
            }),
            root: Some(OciRoot {
                path: String::new(),
                readonly: true,
            }),
            mounts: c
                .mounts
                .iter()
                .map(|m| OciMount {
                    destination: m.destination.clone(),
                    kind: non_empty(&m.r#type),
                    source: non_empty(&m.source),
                    options: m.options.clone(),
                })
                .collect(),
            linux: Some(OciLinux {
                namespaces: linux
                    .namespaces
                    .iter()
                    .map(|n| OciNamespace {
                        kind: n.r#type.clone(),
                        path: non_empty(&n.path),
                    })
                    .collect(),
                uid_mappings: Vec::new(),
                sysctl: linux.sysctl.clone(),
                seccomp,
                masked_paths: vec![UNSEEN_BY_NRI.to_string()],
                readonly_paths: vec![UNSEEN_BY_NRI.to_string()],
                devices: linux
                    .devices
                    .iter()
                    .map(|d| OciDevice {
                        path: d.path.clone(),
                        kind: d.r#type.clone(),
                        major: d.major,
                        minor: d.minor,
                    })
                    .collect(),
                resources: Some(OciResources {
                    devices: device_rules,
                }),
            }),
            annotations: BTreeMap::new(),
        };

        // NRI gives the sandbox id as a field; the engine reads it (to recognise the
        // runtime-managed mounts of this pod) from containerd's annotation.
        let mut extra = BTreeMap::new();
        if !c.pod_sandbox_id.is_empty() && !c.annotations.contains_key(annotations::CRI_SANDBOX_ID)
        {
            extra.insert(
                annotations::CRI_SANDBOX_ID.to_string(),
                c.pod_sandbox_id.clone(),
            );
        }
        if !c.name.is_empty() && !c.annotations.contains_key(annotations::CRI_CONTAINER_NAME) {
            extra.insert(annotations::CRI_CONTAINER_NAME.to_string(), c.name.clone());
        }

        let pod = req.pod.as_ref().map(|p| PodInfo {
            namespace: non_empty(&p.namespace),
            name: non_empty(&p.name),
            uid: non_empty(&p.uid),
            labels: Some(p.labels.clone()),
            service_account: None,
        });
        let image = c
            .image
            .as_ref()
            .filter(|i| !i.name.is_empty() || !i.digest.is_empty())
            .map(|i| ImageInfo {
                name: non_empty(&i.name),
                digest: non_empty(&i.digest),
            });

        // What containerd tells NRI is the runtime's own word, not the pod author's: the
        // namespace paths it wrote (`/proc/<pause pid>/ns/ipc` is the pod's; only the host's
        // own spellings are the host's) and the sandbox id with the pod uid, whose runtime
        // directories (hosts, resolv.conf, shm, kubelet volumes) are this pod's.
        let host = HostFacts {
            namespaces: linux
                .namespaces
                .iter()
                .filter(|n| !n.path.is_empty())
                .map(|n| NamespaceFact {
                    kind: n.r#type.clone(),
                    path: n.path.clone(),
                    host: Some(spelled_host_namespace(&n.path)),
                    error: None,
                })
                .collect(),
            sandbox: (!c.pod_sandbox_id.is_empty()).then(|| {
                SandboxFact::from_runtime(
                    &c.pod_sandbox_id,
                    req.pod
                        .as_ref()
                        .map(|p| p.uid.as_str())
                        .filter(|u| !u.is_empty()),
                )
            }),
            ..HostFacts::default()
        };

        unseen.sort_unstable();
        Ok(Converted {
            request: ContainerRequest {
                state: OciState {
                    oci_version: String::new(),
                    id: c.id.clone(),
                    status: "creating".into(),
                    pid: None,
                    bundle: String::new(),
                    annotations: c.annotations.clone(),
                },
                config,
                annotations: extra,
                pod,
                image,
                host: Some(host),
            },
            unseen,
        })
    }
}

/// NRI's `LinuxSeccomp` as the OCI `linux.seccomp` object the engine judges.
fn seccomp_json(p: &LinuxSeccomp) -> serde_json::Value {
    let syscalls: Vec<serde_json::Value> = p
        .syscalls
        .iter()
        .map(|s| {
            let args: Vec<serde_json::Value> = s
                .args
                .iter()
                .map(|a| serde_json::json!({"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op}))
                .collect();
            serde_json::json!({"names": s.names, "action": s.action, "args": args})
        })
        .collect();
    let mut v = serde_json::json!({"architectures": p.architectures, "syscalls": syscalls});
    if !p.default_action.is_empty()
        && let Some(o) = v.as_object_mut()
    {
        o.insert("defaultAction".into(), p.default_action.clone().into());
    }
    v
}

/// containerd's device rules (`pkg/oci`: deny all, then the default devices read-write).
fn default_device_rules() -> Vec<OciDeviceCgroup> {
    let mut rules = vec![OciDeviceCgroup {
        allow: false,
        kind: None,
        major: None,
        minor: None,
        access: Some("rwm".into()),
    }];
    for pat in DEFAULT_DEVICES
        .iter()
        .filter_map(|d| DevicePattern::parse(d))
    {
        rules.push(OciDeviceCgroup {
            allow: true,
            kind: Some(pat.kind.to_string()),
            major: pat.major,
            minor: pat.minor,
            access: Some("rwm".into()),
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        Container, Image, LinuxContainer, LinuxNamespace, Mount, PodSandbox, SecurityProfile, User,
    };

    fn pod() -> PodSandbox {
        PodSandbox {
            id: "sb1".into(),
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: "shop".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            annotations: BTreeMap::new(),
        }
    }

    fn container() -> Container {
        Container {
            id: "c1".into(),
            pod_sandbox_id: "sb1".into(),
            name: "web".into(),
            linux: Some(LinuxContainer {
                namespaces: vec![LinuxNamespace {
                    r#type: "pid".into(),
                    path: String::new(),
                }],
                ..LinuxContainer::default()
            }),
            ..Container::default()
        }
    }

    fn convert(c: Container) -> Converted {
        let req = CreateContainerRequest {
            pod: Some(pod()),
            container: Some(c),
        };
        match Converted::try_from(&req) {
            Ok(c) => c,
            Err(e) => unreachable!("conversion failed: {e}"),
        }
    }

    #[test]
    fn the_pod_becomes_the_requests_pod_with_its_labels() {
        let c = convert(container());
        let pod = c.request.pod.unwrap_or_default();
        assert_eq!(pod.namespace.as_deref(), Some("shop"));
        assert_eq!(pod.name.as_deref(), Some("web-0"));
        assert_eq!(pod.uid.as_deref(), Some("uid-1"));
        assert_eq!(
            pod.labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("web")
        );
    }

    #[test]
    fn the_sandbox_id_and_container_name_become_containerd_annotations_when_missing() {
        let c = convert(container());
        assert_eq!(
            c.request.annotations.get(annotations::CRI_SANDBOX_ID),
            Some(&"sb1".to_string())
        );
        assert_eq!(
            c.request.annotations.get(annotations::CRI_CONTAINER_NAME),
            Some(&"web".to_string())
        );
    }

    #[test]
    fn namespaces_mounts_and_sysctls_are_carried_over() {
        let mut ctr = container();
        ctr.mounts.push(Mount {
            destination: "/var/run/docker.sock".into(),
            r#type: "bind".into(),
            source: "/var/run/docker.sock".into(),
            options: vec!["rbind".into(), "rw".into()],
        });
        if let Some(l) = ctr.linux.as_mut() {
            l.sysctl.insert("net.core.somaxconn".into(), "1024".into());
        }
        let c = convert(ctr);
        let linux = c.request.config.linux.unwrap_or_default();
        assert_eq!(linux.namespaces.len(), 1);
        assert_eq!(
            linux.namespaces.first().map(|n| n.kind.as_str()),
            Some("pid")
        );
        assert_eq!(
            linux.sysctl.get("net.core.somaxconn").map(String::as_str),
            Some("1024")
        );
        let m = c.request.config.mounts.first().cloned().unwrap_or_default();
        assert_eq!(m.kind.as_deref(), Some("bind"));
        assert_eq!(m.source.as_deref(), Some("/var/run/docker.sock"));
    }

    #[test]
    fn an_unconfined_seccomp_profile_is_no_profile_and_runtime_default_is_one() {
        let mut ctr = container();
        if let Some(l) = ctr.linux.as_mut() {
            l.seccomp_profile = Some(SecurityProfile {
                profile_type: ProfileType::Unconfined as i32,
                localhost_ref: String::new(),
            });
        }
        let c = convert(ctr.clone());
        assert!(c.request.config.linux.is_some_and(|l| l.seccomp.is_none()));
        assert!(!c.unseen.contains(&"seccomp"));
        if let Some(l) = ctr.linux.as_mut() {
            l.seccomp_profile = Some(SecurityProfile::default());
        }
        let c = convert(ctr);
        assert!(c.request.config.linux.is_some_and(|l| l.seccomp.is_some()));
    }

    #[test]
    fn without_a_seccomp_profile_or_user_those_controls_are_unseen_and_fail_closed() {
        let c = convert(container());
        assert!(c.unseen.contains(&"seccomp"));
        assert!(c.unseen.contains(&"runAsNonRoot"));
        assert!(
            c.request
                .config
                .linux
                .as_ref()
                .is_some_and(|l| l.seccomp.is_none())
        );
        assert!(
            c.request
                .config
                .process
                .as_ref()
                .is_some_and(|p| p.user.is_none())
        );
    }

    #[test]
    fn the_user_is_taken_when_nri_gives_it() {
        let mut ctr = container();
        ctr.user = Some(User {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
        });
        let c = convert(ctr);
        assert!(!c.unseen.contains(&"runAsNonRoot"));
        let uid = c.request.config.process.and_then(|p| p.user).map(|u| u.uid);
        assert_eq!(uid, Some(1000));
    }

    #[test]
    fn the_image_comes_from_the_image_field_and_an_empty_one_is_none() {
        let mut ctr = container();
        ctr.image = Some(Image {
            name: "registry.example.com/shop/web:1.2".into(),
            digest: "sha256:aa".into(),
            config_digest: String::new(),
        });
        let c = convert(ctr.clone());
        let image = c.request.image.unwrap_or_default();
        assert_eq!(
            image.name.as_deref(),
            Some("registry.example.com/shop/web:1.2")
        );
        assert_eq!(image.digest.as_deref(), Some("sha256:aa"));
        ctr.image = Some(Image::default());
        assert!(convert(ctr).request.image.is_none());
    }

    #[test]
    fn device_nodes_and_rules_are_carried_over_and_without_rules_the_defaults_stand_in() {
        use crate::proto::{LinuxDevice, LinuxDeviceCgroup, LinuxResources, OptionalInt64};
        let mut ctr = container();
        if let Some(l) = ctr.linux.as_mut() {
            l.devices.push(LinuxDevice {
                path: "/dev/sda".into(),
                r#type: "b".into(),
                major: 8,
                minor: 0,
            });
        }
        let c = convert(ctr.clone());
        assert!(c.unseen.contains(&"devices"));
        let linux = c.request.config.linux.clone().unwrap_or_default();
        assert_eq!(
            linux
                .devices
                .first()
                .map(|d| (d.kind.as_str(), d.major, d.minor)),
            Some(("b", 8, 0))
        );
        let rules = linux.resources.unwrap_or_default().devices;
        assert_eq!(rules.len(), 11, "deny all, then the ten default devices");
        assert_eq!(
            rules.first().map(|r| (r.allow, r.access.as_deref())),
            Some((false, Some("rwm")))
        );
        if let Some(l) = ctr.linux.as_mut() {
            l.resources = Some(LinuxResources {
                devices: vec![LinuxDeviceCgroup {
                    allow: true,
                    r#type: "b".into(),
                    major: Some(OptionalInt64 { value: 8 }),
                    minor: None,
                    access: "rw".into(),
                }],
            });
        }
        let c = convert(ctr);
        assert!(!c.unseen.contains(&"devices"));
        let rules = c
            .request
            .config
            .linux
            .and_then(|l| l.resources)
            .unwrap_or_default()
            .devices;
        assert_eq!(
            rules.first().map(|r| (
                r.allow,
                r.kind.as_deref(),
                r.major,
                r.minor,
                r.access.as_deref()
            )),
            Some((true, Some("b"), Some(8), None, Some("rw")))
        );
    }

    #[test]
    fn the_seccomp_filter_is_carried_as_the_oci_object_and_localhost_without_it_is_unseen() {
        use crate::proto::{LinuxSeccomp, LinuxSyscall};
        let mut ctr = container();
        if let Some(l) = ctr.linux.as_mut() {
            l.seccomp_profile = Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "/var/lib/kubelet/seccomp/app.json".into(),
            });
        }
        let c = convert(ctr.clone());
        assert!(c.unseen.contains(&"seccomp"));
        if let Some(l) = ctr.linux.as_mut() {
            l.seccomp_policy = Some(LinuxSeccomp {
                default_action: "SCMP_ACT_ALLOW".into(),
                architectures: vec!["SCMP_ARCH_X86_64".into()],
                syscalls: vec![LinuxSyscall {
                    names: vec!["kexec_load".into()],
                    action: "SCMP_ACT_ERRNO".into(),
                    args: vec![],
                }],
            });
        }
        let c = convert(ctr);
        assert!(!c.unseen.contains(&"seccomp"));
        let seccomp = c.request.config.linux.and_then(|l| l.seccomp);
        assert_eq!(
            seccomp,
            Some(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "args": []}]
            }))
        );
    }

    #[test]
    fn controls_nri_never_shows_are_always_unseen() {
        let c = convert(container());
        for control in NEVER_SEEN {
            assert!(c.unseen.contains(&control), "{control}");
        }
    }

    #[test]
    fn a_request_without_a_container_or_id_is_refused() {
        let none = CreateContainerRequest {
            pod: Some(pod()),
            container: None,
        };
        assert_eq!(Converted::try_from(&none), Err(ConvertError::NoContainer));
        let no_id = CreateContainerRequest {
            pod: Some(pod()),
            container: Some(Container::default()),
        };
        assert_eq!(Converted::try_from(&no_id), Err(ConvertError::NoId));
    }
}
