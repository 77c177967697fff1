//! Namespaces by identity or spelling, mount sources, the root filesystem and the runtime's
//! own paths: one row a case.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::container::{OciNamespace, OciRoot};

fn linux(entries: &[(&str, Option<&str>)]) -> OciLinux {
    OciLinux {
        namespaces: entries
            .iter()
            .map(|(k, p)| OciNamespace {
                kind: (*k).to_string(),
                path: p.map(str::to_string),
            })
            .collect(),
        ..OciLinux::default()
    }
}

#[test]
fn without_facts_any_proc_path_may_be_the_hosts() {
    for (path, host) in [
        ("/proc/1/ns/net", true),
        ("//proc/self/ns/net", true),
        ("/proc/./self/ns/net", true),
        ("/proc/2/ns/net", true),
        ("/proc/1/task/1/ns/net", true),
        ("/var/run/netns/../../proc/1/ns/net", true),
        ("proc/1/ns/net", true),
        ("/proc/4242/ns/net", true),
        ("/var/run/netns/../netns/cni-1234", true),
        ("/var/run/netns/cni-1234", false),
        ("/run/netns/pod-a", false),
    ] {
        let l = linux(&[("network", Some(path))]);
        let got = namespace_is_host(Some(&l), "network", None);
        assert_eq!(got.is_some(), host, "{path}: {got:?}");
    }
}

#[test]
fn with_facts_the_identity_decides_and_an_unopened_path_fails_closed() {
    let fact = |path: &str, host: Option<bool>, error: Option<&str>| HostFacts {
        namespaces: vec![NamespaceFact {
            kind: "network".into(),
            path: path.into(),
            host,
            error: error.map(str::to_string),
        }],
        ..HostFacts::default()
    };
    let l = linux(&[("network", Some("/proc/4242/ns/net"))]);
    let not_host = fact("/proc/4242/ns/net", Some(false), None);
    assert_eq!(
        namespace_is_host(Some(&l), "network", Some(&not_host)),
        None
    );
    let host = fact("/proc/4242/ns/net", Some(true), None);
    assert_eq!(
        namespace_is_host(Some(&l), "network", Some(&host)).as_deref(),
        Some(
            "the `network` namespace joins `/proc/4242/ns/net`, which is the host's (same device and inode)"
        )
    );
    let gone = fact(
        "/proc/4242/ns/net",
        None,
        Some("No such file or directory (os error 2)"),
    );
    assert_eq!(
        namespace_is_host(Some(&l), "network", Some(&gone)).as_deref(),
        Some(
            "the `network` namespace joins `/proc/4242/ns/net`, which the hook could not compare with the host's (No such file or directory (os error 2)); fail closed"
        )
    );
    // A fact about another path does not count: the spelling decides.
    let other = fact("/var/run/netns/x", Some(false), None);
    assert!(namespace_is_host(Some(&l), "network", Some(&other)).is_some());
}

#[test]
fn absent_and_duplicated_entries_are_the_hosts() {
    let l = linux(&[("pid", None)]);
    assert_eq!(
        namespace_is_host(Some(&l), "network", None).as_deref(),
        Some("`network` is not in `linux.namespaces`")
    );
    assert_eq!(namespace_is_host(Some(&l), "pid", None), None);
    let twice = linux(&[("network", None), ("network", Some("/proc/1/ns/net"))]);
    assert!(
        namespace_is_host(Some(&twice), "network", None)
            .unwrap()
            .contains("lists `network` 2 times")
    );
}

fn mount(kind: &str, source: &str, dest: &str, options: &[&str]) -> OciMount {
    OciMount {
        destination: dest.into(),
        kind: Some(kind.into()),
        source: Some(source.into()),
        options: options.iter().map(|s| (*s).to_string()).collect(),
    }
}

fn config(mounts: Vec<OciMount>, root: &str) -> OciConfig {
    OciConfig {
        mounts,
        root: Some(OciRoot {
            path: root.into(),
            readonly: true,
        }),
        ..OciConfig::default()
    }
}

const PODMAN_ID: &str = "0dc43a2201f9412a14d59f5955416c5eaac0fe6826a27104271ab9d5dd3fa0fa";

#[test]
fn host_storage_without_a_bind_mount_is_a_host_path() {
    let bundle = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1";
    let s = Storage::new(bundle, None, None);
    let cases: &[(&str, Vec<OciMount>, &str, &[&str])] = &[
        (
            "an ext4 mount of the host's disk",
            vec![mount("ext4", "/dev/vda", "/mnt", &[])],
            "rootfs",
            &["`ext4` of `/dev/vda` at `/mnt`"],
        ),
        (
            "an overlay of host directories",
            vec![mount(
                "overlay",
                "overlay",
                "/mnt",
                &["lowerdir=/etc:/usr", "upperdir=/tmp/u", "workdir=/tmp/w"],
            )],
            "rootfs",
            &[
                "`/etc` (overlay `lowerdir`) at `/mnt`",
                "`/usr` (overlay `lowerdir`) at `/mnt`",
                "`/tmp/u` (overlay `upperdir`) at `/mnt`",
                "`/tmp/w` (overlay `workdir`) at `/mnt`",
            ],
        ),
        (
            "the host's root as the root filesystem",
            vec![],
            "/",
            &["`/` as the root filesystem (`root.path`)"],
        ),
        (
            "a root filesystem climbing out of the bundle",
            vec![],
            "../../../../../etc",
            &["`/etc` as the root filesystem (`root.path`)"],
        ),
        (
            "a relative bind source is the bundle's, not a runtime path",
            vec![mount("bind", "data", "/data", &["rbind"])],
            "rootfs",
            &[
                "`/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/data` (written `data`) at `/data`",
            ],
        ),
        (
            "devtmpfs is the host's /dev",
            vec![mount("devtmpfs", "devtmpfs", "/dev", &[])],
            "rootfs",
            &["`devtmpfs` of `devtmpfs` at `/dev`"],
        ),
        (
            "pseudo-filesystems and the bundle's rootfs pass",
            vec![
                mount("proc", "proc", "/proc", &[]),
                mount("tmpfs", "shm", "/dev/shm", &[]),
                mount("sysfs", "sysfs", "/sys", &["ro"]),
                mount("cgroup2", "cgroup", "/sys/fs/cgroup", &["ro"]),
                mount("mqueue", "mqueue", "/dev/mqueue", &[]),
                mount("devpts", "devpts", "/dev/pts", &[]),
            ],
            "rootfs",
            &[],
        ),
    ];
    for (name, mounts, root, want) in cases {
        let got = host_paths(&[], &config(mounts.clone(), root), &s);
        assert_eq!(&got, want, "{name}");
    }
}

#[test]
fn resolved_sources_from_the_host_decide_and_unresolved_ones_fail_closed() {
    let facts = HostFacts {
        bundle: Some("/b".into()),
        mounts: vec![
            MountFact {
                index: 0,
                source: PathFact {
                    path: "hostroot".into(),
                    resolved: Some("/".into()),
                    error: None,
                },
            },
            MountFact {
                index: 1,
                source: PathFact {
                    path: "/gone".into(),
                    resolved: None,
                    error: Some("No such file or directory (os error 2)".into()),
                },
            },
        ],
        root: Some(PathFact {
            path: "rootfs".into(),
            resolved: Some("/b/rootfs".into()),
            error: None,
        }),
        ..HostFacts::default()
    };
    let s = Storage::new("/b", Some(&facts), None);
    let c = config(
        vec![
            mount("bind", "hostroot", "/host", &["rbind"]),
            mount("bind", "/gone", "/gone", &["rbind"]),
        ],
        "rootfs",
    );
    assert_eq!(
        host_paths(&[], &c, &s),
        [
            "`/` (written `hostroot`) at `/host`",
            "`/gone` at `/gone` (cannot be resolved on the host: No such file or directory (os error 2))",
        ]
    );
    // The same root resolved outside the bundle (a symlink `rootfs` → `/`).
    let mut escaped = facts.clone();
    escaped.root = Some(PathFact {
        path: "rootfs".into(),
        resolved: Some("/".into()),
        error: None,
    });
    let s = Storage::new("/b", Some(&escaped), None);
    assert_eq!(
        host_paths(&[], &config(vec![], "rootfs"), &s),
        ["`/` as the root filesystem (`root.path`)"]
    );
}

#[test]
fn the_runtimes_own_paths_pass_by_layout_not_by_annotation() {
    let podman_bundle = format!("/var/lib/containers/storage/vfs-containers/{PODMAN_ID}/userdata");
    let s = Storage::new(&podman_bundle, None, None);
    let own = |p: &str| format!("/{p}/vfs-containers/{PODMAN_ID}/userdata");
    let passes = [
        format!("{}/hosts", own("run/containers/storage")),
        format!("{}/shm", own("var/lib/containers/storage")),
        format!("{}/.containerenv", own("tmp/custom-runroot")),
        format!("{}/run/secrets", own("run/containers/storage")),
        "/var/lib/containers/storage/volumes/data/_data".to_string(),
        "/var/lib/containers/storage/volumes/data/_data/sub".to_string(),
    ];
    for p in &passes {
        assert!(s.managed(p), "{p}");
    }
    let refused = [
        "/var/lib/containers/storage".to_string(),
        "/var/lib/containers/storage/volumes".to_string(),
        "/var/lib/containers/storage/volumes/data".to_string(),
        "/var/lib/containers/storage/vfs-containers/0badc0de/userdata/hosts".to_string(),
        format!("/run/containers/storage/vfs-containers/{PODMAN_ID}/other"),
        "/var/lib/kubelet/pods/6f1a2b3c/volumes/kubernetes.io~secret/db".to_string(),
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io".to_string(),
    ];
    for p in &refused {
        assert!(!s.managed(p), "{p}");
    }
    // containerd: nothing is the runtime's without a proven sandbox, whatever the
    // annotations say (they are not read here at all).
    let s = Storage::new(
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1",
        None,
        None,
    );
    assert!(!s.managed("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/hosts"));
    let proven = HostFacts {
        sandbox: Some(SandboxFact::from_runtime("sb1", Some("uid-1"))),
        ..HostFacts::default()
    };
    let s = Storage::new(
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1",
        Some(&proven),
        None,
    );
    for p in [
        "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/hosts",
        "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm",
        "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~secret/db",
    ] {
        assert!(s.managed(p), "{p}");
    }
    for p in [
        "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/hosts",
        "/var/lib/kubelet/pods/uid-2/volumes/kubernetes.io~secret/db",
        "/var/lib/kubelet/pods",
    ] {
        assert!(!s.managed(p), "{p}");
    }
    // A sandbox id that is not one path component names no directory.
    assert!(
        SandboxFact::from_runtime("..", Some("../.."))
            .dirs
            .is_empty()
    );
}

#[test]
fn rootless_podman_default_devices_pass_only_at_their_own_path() {
    let bundle =
        format!("/home/u/.local/share/containers/storage/overlay-containers/{PODMAN_ID}/userdata");
    let s = Storage::new(&bundle, None, None);
    let c = config(
        vec![
            mount("bind", "/dev/null", "/dev/null", &["bind", "rw"]),
            mount("bind", "/dev/urandom", "/dev/urandom", &["bind", "rw"]),
            mount("bind", "/dev/null", "/etc/shadow", &["bind", "rw"]),
            mount("bind", "/dev/mem", "/dev/mem", &["bind", "rw"]),
        ],
        &format!("/home/u/.local/share/containers/storage/overlay/{PODMAN_ID}/merged"),
    );
    assert_eq!(
        host_paths(&[], &c, &s),
        ["`/dev/null` at `/etc/shadow`", "`/dev/mem` at `/dev/mem`"]
    );
}
