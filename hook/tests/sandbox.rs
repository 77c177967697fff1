//! The pod sandbox is proven by identity, not by annotation: on a containerd-shaped layout
//! in a temporary directory, with real processes in their own IPC and UTS namespaces
//! (`unshare`) standing in for pause processes, the hook proves the sandbox whose process
//! the container shares a namespace with, and refuses a candidate that only an annotation
//! names. Needs root (`unshare`); skipped, saying so, otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use palisade_oci_hook::component::admit_native;
use palisade_oci_hook::host::gather;
use palisade_oci_hook::policy::PolicyPath;
use serde_json::json;

use common::{is_root, policy_yaml, skipped};

/// A process in new IPC and UTS namespaces, killed on drop.
struct Pause(Child);

impl Pause {
    fn start() -> Pause {
        let child = Command::new("unshare")
            .args(["--ipc", "--uts", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // `unshare` execs `sleep` once the namespaces exist.
        for _ in 0..200 {
            let exe = fs::read_link(format!("/proc/{}/exe", child.id())).unwrap_or_default();
            if exe.display().to_string().ends_with("sleep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Pause(child)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const UID: &str = "6f1a2b3c-0000-4000-8000-00000000abcd";

fn sandbox_bundle(task: &Path, id: &str, pid: u32) {
    let dir = task.join(id);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("init.pid"), pid.to_string()).unwrap();
    let config = json!({"annotations": {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-uid": UID,
    }});
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn the_sandbox_is_the_one_whose_namespaces_the_container_joins() {
    if !is_root() {
        skipped("unshare needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = fs::canonicalize(tmp.path()).unwrap();
    let task = state.join("io.containerd.runtime.v2.task/k8s.io");
    let (ours, other) = (Pause::start(), Pause::start());
    sandbox_bundle(&task, "sb-ours", ours.pid());
    sandbox_bundle(&task, "sb-other", other.pid());
    let shm = |sb: &str| {
        let p = state
            .join("io.containerd.grpc.v1.cri/sandboxes")
            .join(sb)
            .join("shm");
        fs::create_dir_all(&p).unwrap();
        p.display().to_string()
    };
    let container = |claimed: &str, shm_of: &str| {
        json!({
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [{"destination": "/dev/shm", "type": "bind", "source": shm(shm_of), "options": ["rbind"]}],
            "annotations": {
                "io.kubernetes.cri.sandbox-id": claimed,
                "io.kubernetes.cri.sandbox-namespace": "palisade-test",
                "io.kubernetes.cri.image-name": "registry.example.com/tools/busybox:1.36",
            },
            "linux": {
                // containerd's default: every device denied first (the `devices` control).
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
                "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "mount"},
                {"type": "ipc", "path": format!("/proc/{}/ns/ipc", ours.pid())},
                {"type": "uts", "path": format!("/proc/{}/ns/uts", ours.pid())},
            ]}
        })
        .to_string()
    };
    let bundle = task.join("c1");
    fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let policy = PolicyPath::Yaml(policy_yaml()).read().unwrap();
    let state_json =
        json!({"ociVersion": "1.0.2", "id": "c1", "status": "creating", "bundle": bundle})
            .to_string();

    // The container joins sb-ours' namespaces: proven, its shm is the pod's.
    let config = container("sb-ours", "sb-ours");
    let facts = gather(&bundle, &config, &[]);
    let sb = facts.sandbox.clone().expect("the sandbox is proven");
    assert_eq!(sb.id, "sb-ours");
    assert_eq!(sb.pod_uid.as_deref(), Some(UID));
    assert_eq!(
        sb.proof,
        format!(
            "the container joins the `ipc` namespace of the sandbox's process (pid {})",
            ours.pid()
        )
    );
    assert!(
        sb.dirs.contains(
            &state
                .join("io.containerd.grpc.v1.cri/sandboxes/sb-ours")
                .display()
                .to_string()
        ),
        "{:?}",
        sb.dirs
    );
    assert!(
        sb.dirs.contains(&format!("/var/lib/kubelet/pods/{UID}")),
        "{:?}",
        sb.dirs
    );
    let a = admit_native(&policy, &state_json, &config, &[], Some(&facts)).unwrap();
    assert!(a.allowed, "{}", a.explanation);

    // Claiming sb-other (an existing sandbox whose process shares nothing with the
    // container) proves nothing: its shm is a host path.
    let config = container("sb-other", "sb-other");
    let facts = gather(&bundle, &config, &[]);
    assert_eq!(facts.sandbox, None);
    let a = admit_native(&policy, &state_json, &config, &[], Some(&facts)).unwrap();
    let controls: Vec<&str> = a.violations.iter().map(|v| v.control.as_str()).collect();
    assert_eq!(controls, ["hostPath"], "{}", a.explanation);

    // The proven sandbox exempts its own directories only, not another sandbox's.
    let config = container("sb-ours", "sb-other");
    let facts = gather(&bundle, &config, &[]);
    assert_eq!(
        facts.sandbox.as_ref().map(|s| s.id.as_str()),
        Some("sb-ours")
    );
    let a = admit_native(&policy, &state_json, &config, &[], Some(&facts)).unwrap();
    assert!(!a.allowed, "{}", a.explanation);
    assert!(a.explanation.contains("sb-other/shm"), "{}", a.explanation);
}
