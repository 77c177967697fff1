//! Containers on a host: Docker's inspect output from recorded samples (`testdata/docker`,
//! written from the Docker Engine API's documented shape), and real Podman containers that the
//! test starts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use palisade_engine::inventory::{NamedPort, Phase, Workload};
use palisade_engine::request::Transport;
use palisade_sources::containers::Containers;
use palisade_sources::kubernetes::Objects;
use palisade_sources::{Finding, Image, Import, ObjectRef};

fn sample(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/docker")
            .join(name),
    )
    .unwrap()
}

fn import(files: &[&str]) -> Import {
    let mut c = Containers::new("default");
    for f in files {
        c.read(f, &sample(f)).unwrap();
    }
    Objects::default().import_with(c)
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(port: u16) -> NamedPort {
    NamedPort {
        name: String::new(),
        port,
        protocol: Transport::Tcp,
    }
}

fn summary(i: &Import) -> Vec<(String, Vec<IpAddr>, Option<Phase>, bool)> {
    i.inventory
        .workloads
        .iter()
        .map(|w| {
            (
                format!("{}/{}", w.namespace, w.name),
                w.ips.clone(),
                w.phase,
                w.host_network,
            )
        })
        .collect()
}

#[test]
fn compose_replicas_become_one_workload_named_by_project_and_service() {
    let i = import(&["compose.json"]);
    assert_eq!(
        summary(&i),
        // Addresses in network-name order: `shop_backend`, then `shop_default`.
        [
            (
                "shop/postgres".into(),
                vec![addr("172.19.0.2"), addr("172.18.0.4")],
                Some(Phase::Running),
                false
            ),
            (
                "shop/web".into(),
                vec![
                    addr("172.18.0.2"),
                    addr("fd00:db8:1::2"),
                    addr("172.18.0.3")
                ],
                Some(Phase::Running),
                false
            ),
        ]
    );
    let web = i.inventory.workload("shop", "web").unwrap();
    assert_eq!(web.ports, [tcp(80)]);
    assert_eq!(web.service_account, "default");
    // The replicas' container numbers differ: only the labels they share remain.
    assert_eq!(
        web.labels
            .get("com.docker.compose.service")
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(web.labels.get("com.docker.compose.container-number"), None);
    assert_eq!(
        i.notes,
        [Finding::new(
            ObjectRef::new("Workload", "shop", "web"),
            "its 2 members disagree on label(s) `com.docker.compose.container-number`: the workload keeps only the labels they share"
        )]
    );
    assert_eq!(i.unmapped, []);
    // Docker reports the image's local ID, not a registry digest; a reference pinned by
    // digest gives one.
    let images: BTreeMap<String, Vec<Image>> = i
        .images
        .iter()
        .map(|w| (w.name.clone(), w.images.clone()))
        .collect();
    assert_eq!(
        images["web"],
        [
            Image {
                container: "shop-web-1".into(),
                image: "nginx:1.27".into(),
                digest: None
            },
            Image {
                container: "shop-web-2".into(),
                image: "nginx:1.27".into(),
                digest: None
            },
        ]
    );
    assert_eq!(
        images["postgres"][0].digest.as_deref(),
        Some("sha256:3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1")
    );
}

#[test]
fn a_swarm_task_is_named_by_its_service_in_its_stacks_namespace() {
    let i = import(&["swarm.json"]);
    assert_eq!(
        summary(&i),
        [(
            "payments/payments_api".into(),
            vec![addr("10.0.0.12"), addr("10.0.1.5")],
            Some(Phase::Running),
            false
        )]
    );
    assert_eq!(i.inventory.workloads[0].ports, [tcp(8443)]);
}

#[test]
fn host_containers_keep_their_names_host_networking_and_exit_status() {
    let i = import(&["host.json"]);
    assert_eq!(
        summary(&i),
        [
            (
                "default/nightly-report".into(),
                vec![],
                Some(Phase::Failed),
                false
            ),
            (
                "default/node-exporter".into(),
                vec![],
                Some(Phase::Running),
                true
            ),
            (
                "default/scratchpad".into(),
                vec![],
                Some(Phase::Succeeded),
                false
            ),
        ]
    );
}

#[test]
fn malformed_and_nameless_containers_are_reported_and_bad_fields_noted() {
    let text = r#"[
        {"Id": "1", "Name": 7},
        {"Id": "2", "Name": "", "Config": {"Labels": {"unrelated": "x"}}},
        {"Id": "3", "Name": "/odd", "Config": {"Labels": null, "ExposedPorts": {"http": {}, "70000/tcp": {}, "53/udp": {}}},
         "NetworkSettings": {"IPAddress": "172.17.0.300", "Networks": {"bridge": {"IPAddress": "172.17.0.9"}}},
         "State": {"Status": "removing"}},
        {"Names": ["ps-only"], "Id": "4", "Image": "localhost/x:1", "State": "running",
         "Ports": [{"container_port": 8080, "protocol": "tcp", "range": 2}]}
    ]"#;
    let mut c = Containers::new("hosts");
    c.read("inspect.json", text).unwrap();
    let i = Objects::default().import_with(c);
    assert_eq!(
        i.unmapped,
        [
            Finding::new(
                ObjectRef::new("Container", "", "inspect.json[0]"),
                "does not read as container inspect output at `Name`: invalid type: integer `7`, expected a string"
            ),
            Finding::new(
                ObjectRef::new("Container", "", "2"),
                "a container without a name or a workload label"
            ),
        ]
    );
    assert_eq!(
        i.notes,
        [
            Finding::new(
                ObjectRef::new("Container", "hosts", "odd"),
                "address `172.17.0.300` is not an IP address: left out"
            ),
            Finding::new(
                ObjectRef::new("Container", "hosts", "odd"),
                "port `70000/tcp` is not `<port>/<tcp|udp|sctp>`: left out"
            ),
            Finding::new(
                ObjectRef::new("Container", "hosts", "odd"),
                "port `http` is not `<port>/<tcp|udp|sctp>`: left out"
            ),
            Finding::new(
                ObjectRef::new("Container", "hosts", "ps-only"),
                "read from `podman ps`, which lists no addresses: use `podman inspect` for them"
            ),
        ]
    );
    let odd = i.inventory.workload("hosts", "odd").unwrap();
    assert_eq!(
        (
            odd.ips.clone(),
            odd.ports.clone(),
            odd.phase,
            odd.terminating
        ),
        (
            vec![addr("172.17.0.9")],
            vec![NamedPort {
                name: String::new(),
                port: 53,
                protocol: Transport::Udp
            }],
            Some(Phase::Running),
            true
        )
    );
    let ps = i.inventory.workload("hosts", "ps-only").unwrap();
    assert_eq!(ps.ports, [tcp(8080), tcp(8081)]);
    let e = c_err("[1, 2");
    assert!(e.starts_with("inspect.json: invalid JSON: "), "{e}");
    assert_eq!(
        c_err("\"text\""),
        "inspect.json: expected an array of containers"
    );
}

fn c_err(text: &str) -> String {
    Containers::new("x")
        .read("inspect.json", text)
        .unwrap_err()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Real Podman.
// ---------------------------------------------------------------------------------------

/// Podman as the hook's tests run it here: vfs storage, cgroupfs, runc, file events.
const PODMAN_FLAGS: &[&str] = &[
    "--storage-driver=vfs",
    "--cgroup-manager=cgroupfs",
    "--runtime=runc",
    "--events-backend=file",
];
const TEST_LABEL: &str = "palisade.test=sources-podman";
const IMAGE: &str = "localhost/palisade-sources-test:1";

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(PODMAN_FLAGS)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Records that the test skips, and why (on stderr, and in `$PALISADE_SKIP_LOG` when set, as
/// the other crates' tests do).
fn skipped(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("PALISADE_SKIP_LOG") {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{test}\t{reason}"));
    }
}

/// A one-binary image (busybox) imported from a tar, as the hook's Podman test makes it.
fn image(dir: &Path) -> Result<(), String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let Some(busybox) = busybox else {
        return Err("no busybox binary on this host".into());
    };
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    for tool in ["sh", "sleep", "true"] {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(tool));
    }
    let tar = dir.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("tar: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let out = podman(&["import", tar.to_str().unwrap(), IMAGE]);
    if !out.status.success() {
        return Err(format!(
            "podman import: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn remove_test_containers() {
    let out = podman(&["ps", "-a", "-q", "--filter", &format!("label={TEST_LABEL}")]);
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = podman(&["rm", "-f", "-t", "0", id]);
    }
}

#[test]
fn real_podman_containers_map_to_workloads_with_their_addresses_labels_and_digest() {
    if Command::new("podman").arg("--version").output().is_err() {
        return skipped("podman is not installed");
    }
    if !rustix_is_root() {
        return skipped("podman with bridge networking needs root here");
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("palisade-sources-podman");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    remove_test_containers();
    if let Err(e) = image(&dir) {
        return skipped(&e);
    }
    // Addresses chosen in the default `podman` network (10.88.0.0/16), unlikely to be taken.
    let run = |name: &str, ip: &str, labels: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--label", TEST_LABEL];
        for l in labels {
            args.extend(["--label", l]);
        }
        if !ip.is_empty() {
            args.extend(["--ip", ip]);
        }
        args.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--expose",
            "8080",
        ]);
        args.push(IMAGE);
        args.extend(cmd);
        let out = podman(&args);
        assert!(
            out.status.success(),
            "podman run {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let sleep: &[&str] = &["sleep", "120"];
    run(
        "palisade-src-web-1",
        "10.88.213.71",
        &[
            "com.docker.compose.project=srctest",
            "com.docker.compose.service=web",
        ],
        sleep,
    );
    run(
        "palisade-src-web-2",
        "10.88.213.72",
        &[
            "com.docker.compose.project=srctest",
            "com.docker.compose.service=web",
        ],
        sleep,
    );
    run(
        "palisade-src-billing",
        "10.88.213.73",
        &[
            "palisade.dev/workload=billing",
            "palisade.dev/namespace=finance",
            "com.docker.compose.service=ignored",
        ],
        sleep,
    );
    run("palisade-src-once", "", &[], &["true"]);
    // `true` exits at once; wait for podman to record it.
    let mut exited = false;
    for _ in 0..50 {
        let out = podman(&[
            "inspect",
            "--format",
            "{{.State.Status}}",
            "palisade-src-once",
        ]);
        if String::from_utf8_lossy(&out.stdout).trim() == "exited" {
            exited = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let digest_out = podman(&["image", "inspect", "--format", "{{.Digest}}", IMAGE]);
    let digest = String::from_utf8_lossy(&digest_out.stdout)
        .trim()
        .to_string();

    let mut c = Containers::new("podman-host");
    let flags: Vec<String> = PODMAN_FLAGS.iter().map(|s| s.to_string()).collect();
    let read = c.from_command(
        "podman",
        &flags,
        &["--filter".into(), format!("label={TEST_LABEL}")],
    );
    remove_test_containers();
    let _ = podman(&["rmi", "-f", IMAGE]);
    read.unwrap();
    assert!(exited, "palisade-src-once did not exit");
    let i = Objects::default().import_with(c);

    assert_eq!(
        summary(&i),
        [
            (
                "finance/billing".into(),
                vec![addr("10.88.213.73")],
                Some(Phase::Running),
                false
            ),
            (
                "podman-host/palisade-src-once".into(),
                vec![],
                Some(Phase::Succeeded),
                false
            ),
            (
                "srctest/web".into(),
                vec![addr("10.88.213.71"), addr("10.88.213.72")],
                Some(Phase::Running),
                false
            ),
        ]
    );
    let web: &Workload = i.inventory.workload("srctest", "web").unwrap();
    assert_eq!(web.ports, [tcp(8080)]);
    assert_eq!(
        web.labels,
        BTreeMap::from([
            ("com.docker.compose.project".into(), "srctest".into()),
            ("com.docker.compose.service".into(), "web".into()),
            ("palisade.test".into(), "sources-podman".into()),
        ])
    );
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let billing = i.images.iter().find(|w| w.name == "billing").unwrap();
    assert_eq!(
        billing.images,
        [Image {
            container: "palisade-src-billing".into(),
            image: IMAGE.into(),
            digest: Some(digest)
        }]
    );
    assert_eq!(i.unmapped, []);
    assert_eq!(i.notes, []);
}

fn rustix_is_root() -> bool {
    // No libc binding needed: root's `id -u` is 0.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
