#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! One row a case: a change to a restricted-compliant containerd container, the policy it is
//! decided under, and the controls it must violate (exactly, in order).

use serde_json::{Value, json};

use crate::container::{ContainerDecision, ContainerRequest, decide_container};
use crate::{SourceFile, load};

const CID: &str = "3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f";

/// The masked and read-only sets the kubelet asks containerd for (`procMount: Default`).
fn kubelet_masked() -> Value {
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

fn kubelet_readonly() -> Value {
    json!([
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger"
    ])
}

/// containerd's default device rules (deny all, then the default character devices, and
/// mknod of anything).
fn containerd_devices() -> Value {
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"}
    ])
}

/// A restricted-compliant application container as containerd's CRI writes it.
fn config() -> Value {
    let caps = json!(["CAP_NET_BIND_SERVICE"]);
    json!({
      "process": {
        "user": {"uid": 1000, "gid": 1000},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": true,
        "apparmorProfile": "cri-containerd.apparmor.d"
      },
      "root": {"path": "rootfs", "readonly": true},
      "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
      ],
      "annotations": {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-namespace": "payments"
      },
      "linux": {
        "resources": {"devices": containerd_devices()},
        "namespaces": [
          {"type": "pid"}, {"type": "ipc", "path": "/proc/4242/ns/ipc"},
          {"type": "uts", "path": "/proc/4242/ns/uts"}, {"type": "mount"},
          {"type": "network", "path": "/proc/4242/ns/net"}
        ],
        "seccomp": {
          "defaultAction": "SCMP_ACT_ERRNO",
          "architectures": ["SCMP_ARCH_X86_64"],
          "syscalls": [
            {"names": ["read", "write", "exit_group", "futex"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]}
          ]
        },
        "maskedPaths": kubelet_masked(),
        "readonlyPaths": kubelet_readonly()
      }
    })
}

fn decide(privileges: &str, config: Value) -> ContainerDecision {
    let text = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {{name: p, namespace: security}}\nspec: {{privileges: {privileges}}}\n"
    );
    let set = load(&[SourceFile::new("p.yaml", text)]).unwrap_or_else(|e| panic!("{e}"));
    let state = json!({"ociVersion": "1.0.2", "id": CID, "status": "creating", "bundle": "/b",
                       "annotations": config["annotations"].clone()});
    let mut req = ContainerRequest::from_oci(&state.to_string(), &config.to_string()).unwrap();
    // The facts the hook establishes on a host where pid 4242 is the pod's pause process: its
    // namespaces are not the host's (the namespace rules are not what these rows test).
    req.host = Some(crate::container::host::HostFacts {
        namespaces: crate::container::host::spelled_namespace_facts(&req.config),
        ..crate::container::host::HostFacts::default()
    });
    decide_container(&set.container, &set.inventory, &req).unwrap()
}

struct Case {
    name: &'static str,
    privileges: &'static str,
    mutate: fn(&mut Value),
    want: &'static [&'static str],
}

const BASELINE: &str = "{level: baseline}";
const RESTRICTED: &str = "{level: restricted}";

fn run(cases: &[Case]) {
    let mut failed = Vec::new();
    for c in cases {
        let mut config = config();
        (c.mutate)(&mut config);
        let d = decide(c.privileges, config);
        let got: Vec<&str> = d.violations.iter().map(|v| v.control.as_str()).collect();
        if got != c.want {
            failed.push(format!("{}: want {:?}, got {:?}\n{d}", c.name, c.want, got));
        }
        assert_eq!(d.allowed, c.want.is_empty(), "{}", c.name);
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn message(privileges: &str, mutate: fn(&mut Value)) -> String {
    let mut c = config();
    mutate(&mut c);
    let d = decide(privileges, c);
    d.violations
        .iter()
        .map(|v| format!("[{}] {}", v.control, v.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mounts(c: &mut Value) -> &mut Vec<Value> {
    c["mounts"].as_array_mut().unwrap()
}

fn user_ns(c: &mut Value, path: Option<&str>, mappings: Value) {
    let ns = match path {
        Some(p) => json!({"type": "user", "path": p}),
        None => json!({"type": "user"}),
    };
    c["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
    c["linux"]["uidMappings"] = mappings;
}

#[test]
fn proc_and_sys_are_the_runtimes_defaults() {
    run(&[
        Case {
            name: "the kubelet's sets as containerd writes them pass",
            privileges: BASELINE,
            mutate: |_| {},
            want: &[],
        },
        Case {
            name: "runc spec's sets pass (asound masked, no powercap)",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([
                    "/proc/acpi",
                    "/proc/asound",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/sys/firmware",
                    "/proc/scsi"
                ]);
            },
            want: &[],
        },
        Case {
            name: "podman's sets pass (asound read-only)",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([
                    "/proc/acpi",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/sched_debug",
                    "/proc/scsi",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/sys/dev/block",
                    "/sys/devices/virtual/powercap",
                    "/sys/firmware",
                    "/sys/fs/selinux"
                ]);
                c["linux"]["readonlyPaths"] = json!([
                    "/proc/asound",
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/sys",
                    "/proc/sysrq-trigger"
                ]);
            },
            want: &[],
        },
        Case {
            name: "a token masked path is not the default set",
            privileges: BASELINE,
            mutate: |c| c["linux"]["maskedPaths"] = json!(["/x"]),
            want: &["procMount"],
        },
        Case {
            name: "/proc/sys dropped from readonlyPaths leaves core_pattern writable",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["readonlyPaths"] =
                    json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"])
            },
            want: &["procMount"],
        },
        Case {
            name: "a read-only path that is masked instead passes",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["readonlyPaths"] = json!([]);
                c["linux"]["maskedPaths"] = json!(["/proc", "/sys/firmware"]);
            },
            want: &[],
        },
        Case {
            name: "a masked ancestor covers, spelled with `.` and `//`",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["readonlyPaths"] = json!([
                    "/proc/./bus",
                    "/proc//fs",
                    "/proc/irq/",
                    "/proc/sys",
                    "/proc/sysrq-trigger"
                ]);
            },
            want: &[],
        },
        Case {
            name: "a read-only path does not stand in for a masked one",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!(["/proc/acpi"]);
                c["linux"]["readonlyPaths"] = json!(["/proc", "/sys"]);
            },
            want: &["procMount"],
        },
        Case {
            name: "an identity user-namespace mapping is host root: no exemption",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([]);
                c["linux"]["readonlyPaths"] = json!([]);
                user_ns(
                    c,
                    None,
                    json!([{"containerID": 0, "hostID": 0, "size": 65536}]),
                );
            },
            want: &["procMount"],
        },
        Case {
            name: "a mapping that reaches host uid 0 from uid 1000 is no exemption either",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([]);
                user_ns(
                    c,
                    None,
                    json!([{"containerID": 0, "hostID": 100000, "size": 1000}, {"containerID": 1000, "hostID": 0, "size": 1}]),
                );
            },
            want: &["procMount"],
        },
        Case {
            name: "a joined user namespace shows no mapping: no exemption",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([]);
                user_ns(
                    c,
                    Some("/proc/4242/ns/user"),
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
                );
            },
            want: &["procMount"],
        },
        Case {
            name: "a user namespace mapped away from host root is exempt (hostUsers: false)",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([]);
                c["linux"]["readonlyPaths"] = json!([]);
                user_ns(
                    c,
                    None,
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
                );
            },
            want: &[],
        },
        Case {
            name: "runc spec's sets lack powercap, which the containerd preset requires",
            privileges: "{level: baseline, procMountPaths: containerd}",
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([
                    "/proc/acpi",
                    "/proc/asound",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/sys/firmware",
                    "/proc/scsi"
                ]);
            },
            want: &["procMount"],
        },
        Case {
            name: "a custom set is all that is required",
            privileges: "{level: baseline, procMountPaths: {masked: [/proc/kcore], readOnly: [/proc/sys]}}",
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
                c["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
            },
            want: &[],
        },
        Case {
            name: "procMount Unmasked checks neither paths nor kernel mounts",
            privileges: "{level: baseline, procMount: Unmasked}",
            mutate: |c| {
                c["linux"]["maskedPaths"] = json!([]);
                mounts(c)
                    .push(json!({"destination": "/host/proc", "type": "proc", "source": "proc"}));
            },
            want: &[],
        },
    ]);
}

#[test]
fn kernel_filesystems_beyond_proc_and_a_read_only_sys_are_refused() {
    run(&[
        Case {
            name: "an extra proc mount is a /proc the masks do not cover",
            privileges: BASELINE,
            mutate: |c| {
                mounts(c)
                    .push(json!({"destination": "/host/proc", "type": "proc", "source": "proc"}))
            },
            want: &["kernelMounts"],
        },
        Case {
            name: "a second proc mount at /proc",
            privileges: BASELINE,
            mutate: |c| {
                mounts(c).push(json!({"destination": "/proc/", "type": "proc", "source": "proc"}))
            },
            want: &["kernelMounts"],
        },
        Case {
            name: "sysfs without ro is writable",
            privileges: BASELINE,
            mutate: |c| {
                c["mounts"][2]["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
            },
            want: &["kernelMounts"],
        },
        Case {
            name: "sysfs with `ro` then `rw`: the last one wins",
            privileges: BASELINE,
            mutate: |c| {
                c["mounts"][2]["options"] = json!(["ro", "nosuid", "rw"]);
            },
            want: &["kernelMounts"],
        },
        Case {
            name: "sysfs with `rw` then `ro` is read-only",
            privileges: BASELINE,
            mutate: |c| {
                c["mounts"][2]["options"] = json!(["rw", "nosuid", "ro"]);
            },
            want: &[],
        },
        Case {
            name: "a second, writable sysfs elsewhere",
            privileges: BASELINE,
            mutate: |c| {
                mounts(c).push(json!({"destination": "/host-sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid"]}))
            },
            want: &["kernelMounts"],
        },
        Case {
            name: "securityfs and debugfs",
            privileges: BASELINE,
            mutate: |c| {
                mounts(c).push(json!({"destination": "/sys/kernel/security", "type": "securityfs", "source": "securityfs"}));
                mounts(c).push(json!({"destination": "/sys/kernel/debug", "type": "debugfs", "source": "debugfs", "options": ["ro"]}));
            },
            // Not a pseudo-filesystem of the container's own, so also a host path.
            want: &["hostPath", "kernelMounts"],
        },
        Case {
            name: "an extra proc mount with an identity user namespace is still refused",
            privileges: BASELINE,
            mutate: |c| {
                mounts(c).push(json!({"destination": "/p2", "type": "proc", "source": "proc"}));
                user_ns(
                    c,
                    None,
                    json!([{"containerID": 0, "hostID": 0, "size": 4294967295_u32}]),
                );
            },
            want: &["kernelMounts"],
        },
        Case {
            name: "privileged level checks no kernel mount",
            privileges: "{level: privileged}",
            mutate: |c| {
                mounts(c)
                    .push(json!({"destination": "/host/proc", "type": "proc", "source": "proc"}))
            },
            want: &[],
        },
    ]);
    let m = message(BASELINE, |c| {
        mounts(c).push(json!({"destination": "/host/proc", "type": "proc", "source": "proc"}));
    });
    assert_eq!(
        m,
        "[kernelMounts] the container mounts a `proc` mount at `/host/proc` (only the one at `/proc` is masked); with procMount `Default` only one `proc` at `/proc`, a read-only `sysfs` and no host kernel filesystem are allowed"
    );
}

#[test]
fn the_proc_message_names_what_is_missing() {
    let m = message(BASELINE, |c| {
        c["linux"]["maskedPaths"] = json!([
            "/x",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi"
        ]);
        c["linux"]["readonlyPaths"] =
            json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"]);
    });
    assert_eq!(
        m,
        "[procMount] `/proc` is not the runtime's default (`common` sets in `linux.maskedPaths` and `linux.readonlyPaths`): not masked: `/sys/firmware`; not read-only: `/proc/asound`, `/proc/sys`; procMount `Default` is required"
    );
}

fn devices(c: &mut Value) -> &mut Vec<Value> {
    c["linux"]["resources"]["devices"].as_array_mut().unwrap()
}

#[test]
fn devices_are_the_runtimes_defaults_unless_allowed() {
    run(&[
        Case {
            name: "containerd's default rules pass",
            privileges: BASELINE,
            mutate: |_| {},
            want: &[],
        },
        Case {
            name: "an allow-all rule (with CAP_MKNOD: the host's disks)",
            privileges: BASELINE,
            mutate: |c| devices(c).push(json!({"allow": true, "access": "rwm"})),
            want: &["devices"],
        },
        Case {
            name: "an allow-all rule taken back by a later deny-all",
            privileges: BASELINE,
            mutate: |c| {
                devices(c).insert(0, json!({"allow": true, "access": "rwm"}));
            },
            want: &[],
        },
        Case {
            name: "no device rules at all: nothing denies the start",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"].as_object_mut().unwrap().remove("resources");
            },
            want: &["devices"],
        },
        Case {
            name: "rules without a leading deny-all",
            privileges: BASELINE,
            mutate: |c| {
                devices(c).remove(0);
            },
            want: &["devices"],
        },
        Case {
            name: "a block device read-write (the host disk)",
            privileges: BASELINE,
            mutate: |c| {
                devices(c).push(
                    json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rw"}),
                )
            },
            want: &["devices"],
        },
        Case {
            name: "every character device readable",
            privileges: BASELINE,
            mutate: |c| devices(c).push(json!({"allow": true, "type": "c", "access": "r"})),
            want: &["devices"],
        },
        Case {
            name: "/dev/mem readable (c 1:1)",
            privileges: BASELINE,
            mutate: |c| {
                devices(c).push(
                    json!({"allow": true, "type": "c", "major": 1, "minor": 1, "access": "r"}),
                )
            },
            want: &["devices"],
        },
        Case {
            name: "a negative major is a wildcard, as runc reads it",
            privileges: BASELINE,
            mutate: |c| {
                devices(c).push(
                    json!({"allow": true, "type": "b", "major": -1, "minor": -1, "access": "w"}),
                )
            },
            want: &["devices"],
        },
        Case {
            name: "an allow rule without access grants rwm",
            privileges: BASELINE,
            mutate: |c| devices(c).push(json!({"allow": true, "type": "b"})),
            want: &["devices"],
        },
        Case {
            name: "a deny rule that takes back only write leaves read",
            privileges: BASELINE,
            mutate: |c| {
                devices(c).push(json!({"allow": true, "type": "b", "access": "rw"}));
                devices(c).push(json!({"allow": false, "type": "b", "access": "w"}));
            },
            want: &["devices"],
        },
        Case {
            name: "mknod of anything without read or write passes",
            privileges: BASELINE,
            mutate: |c| devices(c).push(json!({"allow": true, "access": "m"})),
            want: &[],
        },
        Case {
            name: "a host block device node passed in",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}])
            },
            want: &["devices"],
        },
        Case {
            name: "/dev/fuse passed in and allowed by the rules",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
                devices(c).push(
                    json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}),
                );
            },
            want: &["devices"],
        },
        Case {
            name: "/dev/fuse with allowedDevices listing it",
            privileges: "{level: baseline, allowedDevices: [\"c 10:229\", \"c 1:3\", \"c 1:5\", \"c 1:7\", \"c 1:8\", \"c 1:9\", \"c 5:0\", \"c 5:1\", \"c 5:2\", \"c 136:*\", \"c 10:200\"]}",
            mutate: |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
                devices(c).push(
                    json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}),
                );
            },
            want: &[],
        },
        Case {
            name: "a FIFO node is no host device",
            privileges: BASELINE,
            mutate: |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/pipe", "type": "p", "major": 0, "minor": 0}])
            },
            want: &[],
        },
        Case {
            name: "privileged level checks no device",
            privileges: "{level: privileged}",
            mutate: |c| devices(c).push(json!({"allow": true, "access": "rwm"})),
            want: &[],
        },
    ]);
    let m = message(BASELINE, |c| {
        devices(c).push(json!({"allow": true, "access": "rwm"}));
        c["linux"]["devices"] =
            json!([{"path": "/dev/vda", "type": "b", "major": 254, "minor": 0}]);
    });
    assert_eq!(
        m,
        "[devices] the container can read or write host devices: `a *:*` `rw` (rule 13), the device node `/dev/vda` (`b 254:0`) (in `linux.resources.devices` and `linux.devices`); allowed devices: `c 1:3`, `c 1:5`, `c 1:7`, `c 1:8`, `c 1:9`, `c 5:0`, `c 5:1`, `c 5:2`, `c 136:*`, `c 10:200`"
    );
}

fn seccomp(c: &mut Value, s: Value) {
    c["linux"]["seccomp"] = s;
}

#[test]
fn restricted_seccomp_must_filter() {
    run(&[
        Case {
            name: "an allow-list profile passes",
            privileges: RESTRICTED,
            mutate: |_| {},
            want: &[],
        },
        Case {
            name: "`seccomp: {}` installs no filter",
            privileges: RESTRICTED,
            mutate: |c| seccomp(c, json!({})),
            want: &["seccomp"],
        },
        Case {
            name: "architectures only installs no filter",
            privileges: RESTRICTED,
            mutate: |c| seccomp(c, json!({"architectures": ["SCMP_ARCH_X86_64"]})),
            want: &["seccomp"],
        },
        Case {
            name: "SCMP_ACT_ALLOW by default filters nothing",
            privileges: RESTRICTED,
            mutate: |c| seccomp(c, json!({"defaultAction": "SCMP_ACT_ALLOW"})),
            want: &["seccomp"],
        },
        Case {
            name: "SCMP_ACT_LOG by default filters nothing",
            privileges: RESTRICTED,
            mutate: |c| seccomp(c, json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": []})),
            want: &["seccomp"],
        },
        Case {
            name: "a deny-list (ALLOW by default, a few ERRNO rules) is not RuntimeDefault",
            privileges: RESTRICTED,
            mutate: |c| {
                seccomp(
                    c,
                    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kexec_load", "init_module"], "action": "SCMP_ACT_ERRNO"}]}),
                )
            },
            want: &["seccomp"],
        },
        Case {
            name: "SCMP_ACT_NOTIFY by default leaves it to a listener",
            privileges: RESTRICTED,
            mutate: |c| {
                seccomp(
                    c,
                    json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}),
                )
            },
            want: &["seccomp"],
        },
        Case {
            name: "an allow-list that lets mount and unshare through",
            privileges: RESTRICTED,
            mutate: |c| {
                seccomp(
                    c,
                    json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "mount", "unshare"], "action": "SCMP_ACT_ALLOW"}]}),
                )
            },
            want: &["seccomp"],
        },
        Case {
            name: "an allow-list with a condition on a sensitive syscall passes",
            privileges: RESTRICTED,
            mutate: |c| {
                seccomp(
                    c,
                    json!({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
                )
            },
            want: &[],
        },
        Case {
            name: "`seccomp: null` is no profile",
            privileges: RESTRICTED,
            mutate: |c| seccomp(c, Value::Null),
            want: &["seccomp"],
        },
        Case {
            name: "a seccomp that is not an object",
            privileges: RESTRICTED,
            mutate: |c| seccomp(c, json!(["SCMP_ACT_ERRNO"])),
            want: &["seccomp"],
        },
        Case {
            name: "baseline does not ask for a filter",
            privileges: BASELINE,
            mutate: |c| seccomp(c, json!({"defaultAction": "SCMP_ACT_ALLOW"})),
            want: &[],
        },
    ]);
    assert_eq!(
        message(RESTRICTED, |c| seccomp(
            c,
            json!({"defaultAction": "SCMP_ACT_LOG"})
        )),
        "[seccomp] `linux.seccomp.defaultAction` is `SCMP_ACT_LOG`: every syscall no rule names is let through; a filtering profile is required (RuntimeDefault, or a Localhost profile that blocks by default)"
    );
}

#[test]
fn apparmor_absent_is_unconfined_unless_the_nodes_have_none() {
    run(&[
        Case {
            name: "absent apparmorProfile (containerd's Unconfined) under baseline",
            privileges: BASELINE,
            mutate: |c| {
                c["process"]
                    .as_object_mut()
                    .unwrap()
                    .remove("apparmorProfile");
            },
            want: &["appArmor"],
        },
        Case {
            name: "an empty apparmorProfile is absent",
            privileges: BASELINE,
            mutate: |c| c["process"]["apparmorProfile"] = json!(""),
            want: &["appArmor"],
        },
        Case {
            name: "notUnconfined (nodes without AppArmor): absent passes",
            privileges: "{level: baseline, appArmor: notUnconfined}",
            mutate: |c| {
                c["process"]
                    .as_object_mut()
                    .unwrap()
                    .remove("apparmorProfile");
            },
            want: &[],
        },
        Case {
            name: "notUnconfined: explicit unconfined is refused",
            privileges: "{level: baseline, appArmor: notUnconfined}",
            mutate: |c| c["process"]["apparmorProfile"] = json!("unconfined"),
            want: &["appArmor"],
        },
        Case {
            name: "an SELinux label does not excuse an absent AppArmor profile",
            privileges: BASELINE,
            mutate: |c| {
                c["process"]
                    .as_object_mut()
                    .unwrap()
                    .remove("apparmorProfile");
                c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
            },
            want: &["appArmor"],
        },
    ]);
}

#[test]
fn selinux_user_and_role_are_the_runtimes() {
    run(&[
        Case {
            name: "system_u:system_r:container_t passes",
            privileges: BASELINE,
            mutate: |c| {
                c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c4,c5")
            },
            want: &[],
        },
        Case {
            name: "user unconfined_u set by the pod",
            privileges: BASELINE,
            mutate: |c| {
                c["process"]["selinuxLabel"] = json!("unconfined_u:system_r:container_t:s0")
            },
            want: &["selinux"],
        },
        Case {
            name: "role unconfined_r set by the pod",
            privileges: RESTRICTED,
            mutate: |c| {
                c["process"]["selinuxLabel"] = json!("system_u:unconfined_r:container_t:s0")
            },
            want: &["selinux"],
        },
        Case {
            name: "a label of one field has no type",
            privileges: BASELINE,
            mutate: |c| c["process"]["selinuxLabel"] = json!("container_t"),
            want: &["selinux"],
        },
        Case {
            name: "allowedUsers widens the users",
            privileges: "{level: baseline, selinux: {allowedTypes: [container_t], allowedUsers: [system_u, staff_u]}}",
            mutate: |c| c["process"]["selinuxLabel"] = json!("staff_u:system_r:container_t:s0"),
            want: &[],
        },
    ]);
    assert_eq!(
        message(BASELINE, |c| c["process"]["selinuxLabel"] =
            json!("unconfined_u:unconfined_r:spc_t:s0")),
        "[selinux] the container's SELinux label `unconfined_u:unconfined_r:spc_t:s0` has type `spc_t` (allowed: `container_t`, `container_init_t`, `container_kvm_t`, `container_engine_t`), user `unconfined_u` (allowed: `system_u`), role `unconfined_r` (allowed: `system_r`)"
    );
}

#[test]
fn sysctls_are_kubernetes_safe_set_on_sandboxes_too() {
    run(&[
        Case {
            name: "tcp_slow_start_after_idle is not in Kubernetes' safe set",
            privileges: BASELINE,
            mutate: |c| c["linux"]["sysctl"] = json!({"net.ipv4.tcp_slow_start_after_idle": "0"}),
            want: &["sysctls"],
        },
        Case {
            name: "tcp_notsent_lowat is not in Kubernetes' safe set",
            privileges: BASELINE,
            mutate: |c| c["linux"]["sysctl"] = json!({"net.ipv4.tcp_notsent_lowat": "16384"}),
            want: &["sysctls"],
        },
        Case {
            name: "tcp_rmem and tcp_wmem (1.32) pass",
            privileges: BASELINE,
            mutate: |c| c["linux"]["sysctl"] = json!({"net.ipv4.tcp_rmem": "4096 87380 6291456", "net.ipv4.tcp_wmem": "4096 16384 4194304"}),
            want: &[],
        },
        Case {
            name: "a safe sysctl written with slashes passes",
            privileges: BASELINE,
            mutate: |c| c["linux"]["sysctl"] = json!({"net/ipv4/tcp_syncookies": "1"}),
            want: &[],
        },
        Case {
            name: "an unsafe sysctl written with slashes is refused",
            privileges: BASELINE,
            mutate: |c| c["linux"]["sysctl"] = json!({"kernel/msgmax": "65536"}),
            want: &["sysctls"],
        },
        Case {
            name: "a sandbox's unsafe sysctl (containerd puts pod sysctls there only)",
            privileges: BASELINE,
            mutate: |c| {
                c["annotations"]["io.kubernetes.cri.container-type"] = json!("sandbox");
                c["linux"]["sysctl"] =
                    json!({"kernel.msgmax": "65536", "kernel.shm_rmid_forced": "1"});
            },
            want: &["sysctls"],
        },
        Case {
            name: "a sandbox's safe sysctl passes",
            privileges: BASELINE,
            mutate: |c| {
                c["annotations"]["io.kubernetes.cri.container-type"] = json!("sandbox");
                c["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "0"});
            },
            want: &[],
        },
    ]);
}

#[test]
fn the_new_controls_are_read_from_yaml_with_errors_naming_the_field() {
    for (privileges, want) in [
        ("{allowedDevices: [\"x 1:3\"]}", "invalid device `x 1:3`"),
        ("{allowedDevices: [\"c 1\"]}", "invalid device `c 1`"),
        ("{allowedDevices: [\"c -1:3\"]}", "invalid device `c -1:3`"),
        (
            "{procMountPaths: docker}",
            "unknown procMountPaths preset `docker`",
        ),
        (
            "{procMountPaths: {masked: [proc/kcore]}}",
            "`proc/kcore` is not an absolute path",
        ),
        ("{procMountPaths: {hidden: [/x]}}", "hidden"),
        (
            "{selinux: {allowedRoles: [\"a:b\"]}}",
            "invalid SELinux role `a:b`",
        ),
    ] {
        let text = format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {{name: p}}\nspec: {{privileges: {privileges}}}\n"
        );
        let err = load(&[SourceFile::new("p.yaml", text)])
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(want)),
            "{privileges}: {err:?}"
        );
    }
}
