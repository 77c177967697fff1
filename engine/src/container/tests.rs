#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::type_complexity
)]
use serde_json::{Value, json};

use super::host::HostFacts;
use super::*;
use crate::error::ContainerError;
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
/// read-only root), joining the pause container's namespaces
/// (`testdata/containerd-config.json`).
fn containerd_config() -> Value {
    fixture(include_str!("testdata/containerd-config.json"))
}

/// `runc spec` (runc 1.1): root, AUDIT_WRITE/KILL/NET_BIND_SERVICE, no seccomp
/// (`testdata/runc-spec.json`).
fn runc_spec_default() -> Value {
    fixture(include_str!("testdata/runc-spec.json"))
}

/// A `config.json` fixture with the pod's uid, sandbox and image digest filled in.
fn fixture(text: &str) -> Value {
    let text = text
        .replace("@UID@", UID)
        .replace("@SANDBOX@", SANDBOX)
        .replace("@DIGEST@", DIGEST);
    serde_json::from_str(&text).unwrap()
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
        namespaces: crate::container::host::spelled_namespace_facts(&req.config),
        sandbox: Some(crate::container::host::SandboxFact::from_runtime(
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
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": dest, "type": "bind", "source": source, "options": options}));
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
    let a = decide_container(&s.container, &s.inventory, &request(containerd_config())).unwrap();
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
            Some("sandbox container: image rules not checked (the pause image is the runtime's)")
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
        matches!(&err, ContainerError::BadLabels { key, .. } if key == "io.kubernetes.cri-o.Labels"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("annotation `io.kubernetes.cri-o.Labels` is not a JSON object"),
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
    let empty = ContainerRequest::from_oci(r#"{"id": "", "status": "creating"}"#, &config)
        .and_then(|r| decide_container(&s.container, &s.inventory, &r));
    assert_eq!(empty, Err(ContainerError::EmptyId));
    assert_eq!(
        ContainerError::EmptyId.to_string(),
        "invalid OCI state: `id` is empty"
    );
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
    assert_eq!(back.container_policies(), s.container);
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
    let s =
        set("{privileges: {level: restricted, hostPID: true, allowedCapabilities: [CAP_CHOWN]}}");
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
