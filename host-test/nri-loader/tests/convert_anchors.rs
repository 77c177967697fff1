//! Independent anchor for the NRI replay (`tests/replay.rs`): there, the native side decides
//! `palisade_nri::convert`'s output and the NRI `.wasm` runs the same `convert`, so a
//! conversion that misread NRI (a host namespace taken for a private one, a mount source
//! dropped, the user lost) would be wrong on both sides and could pass.
//!
//! Anchor kind: **hand-written expected values.** For named recorded events, the facts the
//! engine's controls read are written down here from the event files themselves
//! (`host-test/testdata/nri/*.json`, read by eye) and from NRI's API (`pkg/api/api.proto`
//! v0.12.2: a namespace absent from `linux.namespaces` is the host's; `user` is absent when
//! the runtime does not fill it; `seccomp_profile.profile_type` `UNCONFINED` is no profile),
//! and compared with what `convert` produced.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use palisade_engine::container::ContainerRequest;
use palisade_nri::convert::Converted;
use palisade_nri_loader::events::load_dir;

/// The converted request of the recorded event `name` (its file stem).
fn converted(name: &str) -> Converted {
    let events = load_dir(&common::testdata()).unwrap();
    let (_, event) = events
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no recorded event {name}"));
    Converted::try_from(&event.request.to_proto().unwrap()).unwrap()
}

fn namespaces(r: &ContainerRequest) -> Vec<&str> {
    r.config
        .linux
        .as_ref()
        .unwrap()
        .namespaces
        .iter()
        .map(|n| n.kind.as_str())
        .collect()
}

fn uid(r: &ContainerRequest) -> Option<u32> {
    r.config
        .process
        .as_ref()
        .and_then(|p| p.user.as_ref())
        .map(|u| u.uid)
}

/// The (destination, source) of every mount whose source is a host path.
fn host_path_mounts(r: &ContainerRequest) -> Vec<(&str, &str)> {
    r.config
        .mounts
        .iter()
        .filter_map(|m| Some((m.destination.as_str(), m.source.as_deref()?)))
        .filter(|(_, s)| s.starts_with('/'))
        .collect()
}

#[test]
fn the_web_pod_converts_to_its_pod_image_user_and_private_namespaces() {
    let c = converted("01-shop-web-allowed");
    let r = &c.request;
    assert_eq!(
        r.state.id,
        "a87c6773c38c87555c22ff3d4e84884f76d62cc3799268505180b63165267542"
    );
    let pod = r.pod.as_ref().unwrap();
    assert_eq!(pod.namespace.as_deref(), Some("shop"));
    assert_eq!(pod.name.as_deref(), Some("web-7d9f8c6b5-x2kqp"));
    let labels: BTreeMap<String, String> = [
        ("app".to_string(), "web".to_string()),
        ("pod-template-hash".to_string(), "7d9f8c6b5".to_string()),
    ]
    .into();
    assert_eq!(pod.labels.as_ref(), Some(&labels));
    let image = r.image.as_ref().unwrap();
    assert_eq!(
        image.name.as_deref(),
        Some("registry.example.com/shop/web:1.4.2")
    );
    assert_eq!(
        image.digest.as_deref(),
        Some("sha256:6beee4185f37321b07c2f6e27ec54e269a200cf77dd4a64d91e7ceeb5aa427d7")
    );
    assert_eq!(uid(r), Some(1000));
    assert_eq!(
        namespaces(r),
        ["pid", "ipc", "uts", "mount", "network", "cgroup"]
    );
    // Only the kubelet's and containerd's own files are bind-mounted from the host.
    let sources: Vec<&str> = host_path_mounts(r).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sources.len(), 6, "{sources:?}");
    assert!(
        sources
            .iter()
            .all(|s| s.starts_with("/var/lib/kubelet/pods/")
                || s.starts_with("/var/lib/containerd/")
                || s.starts_with("/run/containerd/")),
        "{sources:?}"
    );
}

#[test]
fn a_host_pid_pod_has_no_pid_namespace_of_its_own() {
    let r = converted("02-shop-debug-host-pid").request;
    // NRI lists the namespaces the container gets; `pid` is missing: it shares the host's.
    assert_eq!(namespaces(&r), ["ipc", "uts", "mount", "network", "cgroup"]);
    assert_eq!(r.pod.as_ref().unwrap().name.as_deref(), Some("debug-shell"));
    assert_eq!(uid(&r), Some(1000));
}

#[test]
fn the_docker_socket_mount_keeps_its_host_source() {
    let r = converted("04-ci-runner-docker-sock").request;
    assert!(
        host_path_mounts(&r).contains(&("/var/run/docker.sock", "/var/run/docker.sock")),
        "{:?}",
        host_path_mounts(&r)
    );
    assert_eq!(r.pod.as_ref().unwrap().namespace.as_deref(), Some("ci"));
}

#[test]
fn node_exporter_shares_the_hosts_pid_and_network_and_mounts_its_root() {
    let r = converted("05-monitoring-node-exporter").request;
    assert_eq!(namespaces(&r), ["ipc", "uts", "mount", "cgroup"]);
    assert!(
        host_path_mounts(&r).contains(&("/host/root", "/")),
        "{:?}",
        host_path_mounts(&r)
    );
    assert_eq!(uid(&r), Some(65534));
}

#[test]
fn an_unconfined_root_job_has_uid_zero_and_no_seccomp_profile() {
    let r = converted("07-payments-unpinned-root").request;
    assert_eq!(uid(&r), Some(0));
    assert_eq!(r.config.linux.as_ref().unwrap().seccomp, None);
    assert_eq!(
        r.image.as_ref().unwrap().name.as_deref(),
        Some("docker.io/library/python:3.12-slim")
    );
}

#[test]
fn a_runtime_default_profile_is_a_profile() {
    let r = converted("01-shop-web-allowed").request;
    assert!(r.config.linux.as_ref().unwrap().seccomp.is_some());
}

#[test]
fn requested_sysctls_are_carried_over_as_sent() {
    let r = converted("10-shop-unsafe-sysctl").request;
    let want: BTreeMap<String, String> = [
        ("kernel.msgmax".to_string(), "65536".to_string()),
        ("net.ipv4.tcp_keepalive_time".to_string(), "600".to_string()),
    ]
    .into();
    assert_eq!(r.config.linux.as_ref().unwrap().sysctl, want);
}

#[test]
fn a_user_the_runtime_did_not_report_is_absent_and_named_unseen() {
    let c = converted("11-payments-user-not-reported");
    assert_eq!(uid(&c.request), None);
    assert!(c.unseen.contains(&"runAsNonRoot"), "{:?}", c.unseen);
    // The web pod's user was reported: not unseen.
    let web = converted("01-shop-web-allowed");
    assert!(!web.unseen.contains(&"runAsNonRoot"), "{:?}", web.unseen);
}
