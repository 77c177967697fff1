//! The hook under real container runtimes on this machine: runc (Debian's), crun with its
//! cgroup workaround, and podman with the shipped hooks.d file. Each case builds an OCI
//! bundle over a busybox-static root filesystem, puts the hook in `hooks.createRuntime`
//! (podman: in a hooks directory) and starts the container.
//!
//! Runtimes need root: as another user every case prints why it is skipped and passes. As
//! root, a missing runtime is installed with apt-get (`cargo xtask setup` does it too).
//!
//! `PALISADE_RECORD_DIR=<dir>` makes every hook keep its inputs and decision under
//! `<dir>/<runtime>/<container id>/` (how `testdata/runc` and `testdata/crun` were recorded).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use common::{
    cache_dir, component, hook_bin, is_root, policy_bundle, policy_yaml, scratch, skipped,
};

const NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const IMAGE: &str = "io.kubernetes.cri.image-name";
const PINNED_IMAGE: &str = "registry.example.com/tools/busybox:1.36";

/// Every Linux capability: what `--privileged` or "add ALL" gives a container.
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The shared fixture: a busybox-static root filesystem, `runc spec`'s template, a fake
/// docker.sock on the host.
struct Env {
    dir: PathBuf,
    rootfs: PathBuf,
    template: Value,
    docker_sock: PathBuf,
}

/// The fixture, or `None` when not root: the calling test is then recorded as skipped, with
/// the reason (see `common::skipped`), and returns.
fn env() -> Option<&'static Env> {
    static ENV: OnceLock<Option<Env>> = OnceLock::new();
    let env = ENV.get_or_init(|| is_root().then(set_up_env)).as_ref();
    if env.is_none() {
        skipped(&format!(
            "real container runtimes need root (running as uid {})",
            rustix::process::geteuid().as_raw()
        ));
    }
    env
}

/// Installs the runtimes when missing and builds the busybox root filesystem and the spec
/// template every test starts from.
fn set_up_env() -> Env {
    ensure_installed("runc", &["runc", "busybox-static"]);
    ensure_busybox_static();
    let dir = scratch().join(format!("runtimes-{}", std::process::id()));
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "var/run"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for tool in ["sh", "echo", "id", "hostname", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    fs::write(rootfs.join("var/run/docker.sock"), "").unwrap();
    let docker_sock = dir.join("host/var/run/docker.sock");
    fs::create_dir_all(docker_sock.parent().unwrap()).unwrap();
    fs::write(&docker_sock, "").unwrap();
    let spec = dir.join("spec");
    fs::create_dir_all(&spec).unwrap();
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {out:?}");
    let template = serde_json::from_slice(&fs::read(spec.join("config.json")).unwrap()).unwrap();
    // Warm the component and its cache before any runtime waits on the hook.
    cache_dir();
    Env {
        dir,
        rootfs,
        template,
        docker_sock,
    }
}

fn ensure_installed(binary: &str, packages: &[&str]) {
    if Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        assert!(install(), "cannot install {packages:?} with apt-get");
    }
}

fn ensure_busybox_static() {
    let installed = Command::new("dpkg")
        .args(["-s", "busybox-static"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        ensure_installed("/nonexistent-force-install", &["busybox-static"]);
    }
}

/// How the hook is invoked in a case.
enum Policy {
    Bundle,
    Yaml,
    Missing,
}

fn hook_args(policy: Policy, runtime: &str) -> Vec<String> {
    let mut args = vec!["palisade-oci-hook".to_string()];
    match policy {
        Policy::Bundle => args.extend(["--bundle".into(), policy_bundle().display().to_string()]),
        Policy::Yaml => args.extend(["--policy".into(), policy_yaml().display().to_string()]),
        Policy::Missing => args.extend(["--bundle".into(), "/nonexistent/policy.bundle".into()]),
    }
    args.extend([
        "--component".into(),
        component().display().to_string(),
        "--cache-dir".into(),
        cache_dir().display().to_string(),
    ]);
    if let Some(dir) = std::env::var_os("PALISADE_RECORD_DIR") {
        args.extend([
            "--record".into(),
            Path::new(&dir).join(runtime).display().to_string(),
        ]);
    }
    args
}

/// A root filesystem of its own inside a bundle (`rootfs`), the shared busybox hard-linked:
/// a root outside the bundle or a container store is host storage to the hook.
fn rootfs_in(env: &Env, bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if rootfs.exists() {
        return;
    }
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "var/run"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::hard_link(env.rootfs.join("bin/busybox"), rootfs.join("bin/busybox"))
        .or_else(|_| {
            fs::copy(env.rootfs.join("bin/busybox"), rootfs.join("bin/busybox")).map(|_| ())
        })
        .unwrap();
    for tool in [
        "sh", "echo", "id", "hostname", "cat", "ls", "grep", "head", "mount", "test", "wc",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
}

/// A bundle for `case`: `runc spec`'s config, running `echo hello from <case>`, annotated as
/// a containerd container of the `palisade-test` namespace, with the hook at createRuntime.
fn bundle(
    env: &Env,
    runtime: &str,
    case: &str,
    policy: Policy,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    let dir = env.dir.join(runtime).join(case);
    fs::create_dir_all(&dir).unwrap();
    rootfs_in(env, &dir);
    let mut config = env.template.clone();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sh", "-c", format!("echo hello from {case}; id -u")]);
    config["root"] = json!({"path": "rootfs", "readonly": true});
    config["hostname"] = json!("palisade");
    config["annotations"] = json!({NAMESPACE: "palisade-test", IMAGE: PINNED_IMAGE});
    config["hooks"] = json!({"createRuntime": [{
        "path": hook_bin(),
        "args": hook_args(policy, runtime),
        "timeout": 60,
    }]});
    edit(&mut config);
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    dir
}

fn id(runtime: &str, case: &str) -> String {
    format!("palisade-{runtime}-{case}-{}", std::process::id())
}

fn show(what: &str, out: &Output) {
    eprintln!(
        "--- {what}: {}\n[stdout]\n{}[stderr]\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn runc(env: &Env, case: &str, policy: Policy, edit: impl FnOnce(&mut Value)) -> Output {
    let b = bundle(env, "runc", case, policy, edit);
    let root = env.dir.join("runc-state");
    let id = id("runc", case);
    let out = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&b)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["delete", "-f", &id])
        .output();
    show(&format!("runc run ({case})"), &out);
    out
}

fn assert_denied(out: &Output, controls: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the container started: {stderr}");
    assert!(
        stderr.contains("palisade-oci-hook: container `"),
        "{stderr}"
    );
    assert!(stderr.contains("denied"), "{stderr}");
    for c in controls {
        assert!(
            stderr.contains(&format!("palisade-test/baseline [{c}]")),
            "no [{c}] in {stderr}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("hello from"),
        "the process ran"
    );
}

fn remove_namespace(config: &mut Value, kind: &str) {
    if let Some(list) = config["linux"]["namespaces"].as_array_mut() {
        list.retain(|n| n["type"] != kind);
    }
}

fn add_all_capabilities(config: &mut Value) {
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set] = json!(ALL_CAPS);
    }
}

#[test]
fn runc_runs_an_allowed_container() {
    let Some(env) = env() else { return };
    let out = runc(env, "allowed", Policy::Bundle, |_| {});
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from allowed\n0\n"
    );
}

#[test]
fn runc_runs_an_allowed_container_with_a_yaml_policy() {
    let Some(env) = env() else { return };
    let out = runc(env, "allowed-yaml", Policy::Yaml, |_| {});
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from allowed-yaml"));
}

#[test]
fn runc_refuses_a_container_with_every_capability() {
    let Some(env) = env() else { return };
    let out = runc(env, "all-caps", Policy::Bundle, add_all_capabilities);
    assert_denied(&out, &["capabilities"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CAP_SYS_ADMIN"));
}

#[test]
fn runc_refuses_a_container_in_the_host_pid_namespace() {
    let Some(env) = env() else { return };
    let out = runc(env, "host-pid", Policy::Bundle, |c| {
        remove_namespace(c, "pid")
    });
    assert_denied(&out, &["hostPID"]);
}

#[test]
fn runc_refuses_a_latest_image() {
    let Some(env) = env() else { return };
    let out = runc(env, "latest", Policy::Bundle, |c| {
        c["annotations"][IMAGE] = json!("docker.io/library/busybox:latest");
    });
    assert_denied(&out, &["image.deniedTag"]);
}

#[test]
fn runc_refuses_a_docker_socket_mount() {
    let Some(env) = env() else { return };
    let sock = env.docker_sock.clone();
    let out = runc(env, "docker-sock", Policy::Bundle, |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/var/run/docker.sock",
            "type": "bind",
            "source": sock,
            "options": ["rbind", "rw"],
        }));
    });
    assert_denied(&out, &["hostPath"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("docker.sock"));
}

#[test]
fn runc_lists_every_violation_of_one_container() {
    let Some(env) = env() else { return };
    let out = runc(env, "everything", Policy::Bundle, |c| {
        add_all_capabilities(c);
        remove_namespace(c, "pid");
        c["annotations"][IMAGE] = json!("busybox");
    });
    assert_denied(&out, &["capabilities", "hostPID", "image.deniedTag"]);
}

#[test]
fn runc_fails_closed_without_its_policy() {
    let Some(env) = env() else { return };
    let out = runc(env, "no-policy", Policy::Missing, |_| {});
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("container start denied (fail closed): cannot read the policy bundle `/nonexistent/policy.bundle`"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hello from"));
}

/// crun 1.8.1 refuses this host's hybrid cgroup layout (`cgroups in hybrid mode not
/// supported`); in a private mount namespace with the cgroup2 mount hidden it runs. crun
/// does not show a hook's stderr: its `run.oci.hooks.stderr` annotation names a file for it,
/// which is appended to the returned stderr here.
fn crun(env: &Env, case: &str, edit: impl FnOnce(&mut Value)) -> Output {
    let hook_log = env.dir.join("crun").join(case).join("hook-stderr.log");
    let log = hook_log.clone();
    let b = bundle(env, "crun", case, Policy::Bundle, |c| {
        c["annotations"]["run.oci.hooks.stderr"] = json!(log);
        edit(c);
    });
    let _ = fs::remove_file(&hook_log);
    let root = env.dir.join("crun-state");
    let id = id("crun", case);
    let script = format!(
        "umount /sys/fs/cgroup/unified 2>/dev/null; crun --cgroup-manager=cgroupfs --root '{}' run --bundle '{}' '{id}'; rc=$?; crun --root '{}' delete -f '{id}' >/dev/null 2>&1; exit $rc",
        root.display(),
        b.display(),
        root.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut out = out;
    out.stderr.extend(fs::read(&hook_log).unwrap_or_default());
    show(&format!("crun run ({case})"), &out);
    out
}

#[test]
fn crun_runs_an_allowed_container_and_refuses_a_host_pid_one() {
    let Some(env) = env() else { return };
    ensure_installed("crun", &["crun"]);
    let out = crun(env, "allowed", |_| {});
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from allowed"));
    let out = crun(env, "host-pid", |c| remove_namespace(c, "pid"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error executing hook"));
    assert_denied(&out, &["hostPID"]);
    let out = crun(env, "all-caps", add_all_capabilities);
    assert_denied(&out, &["capabilities"]);
}

#[test]
fn podman_with_the_hooks_d_file_runs_an_allowed_container_and_refuses_a_privileged_one() {
    let Some(env) = env() else { return };
    ensure_installed("podman", &["podman"]);
    // The shipped hooks.d file, pointed at this build and the test policy.
    let shipped: Value = serde_json::from_slice(
        &fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks.d/palisade.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped["version"], "1.0.0");
    assert_eq!(shipped["stages"], json!(["createRuntime"]));
    let mut hook = shipped.clone();
    hook["hook"]["path"] = json!(hook_bin());
    hook["hook"]["args"] = json!(hook_args(Policy::Bundle, "podman"));
    let hooks_dir = env.dir.join("podman/hooks.d");
    fs::create_dir_all(&hooks_dir).unwrap();
    fs::write(
        hooks_dir.join("palisade.json"),
        serde_json::to_vec_pretty(&hook).unwrap(),
    )
    .unwrap();

    // Podman's default storage (`/var/lib/containers/storage`, `/run/containers/storage`):
    // the engine knows the files podman bind-mounts from there for each container (hosts,
    // hostname, .containerenv, shm) as runtime-managed, not as host paths.
    let podman = || {
        let mut c = Command::new("podman");
        c.args([
            "--storage-driver=vfs",
            "--cgroup-manager=cgroupfs",
            "--runtime=runc",
            "--events-backend=file",
        ])
        .arg("--hooks-dir")
        .arg(&hooks_dir)
        .stdin(Stdio::null());
        c
    };
    let tar = env.dir.join("podman/rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&env.rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = podman()
        .arg("import")
        .arg(&tar)
        .arg("localhost/palisade-busybox:test")
        .output()
        .unwrap();
    assert!(out.status.success(), "podman import: {out:?}");
    let run = |extra: &[&str], image_name: &str| {
        let out = podman()
            .args(["run", "--rm", "--network=none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--annotation", &format!("{NAMESPACE}=palisade-test")])
            .args(["--annotation", &format!("{IMAGE}={image_name}")])
            .args(extra)
            .args([
                "localhost/palisade-busybox:test",
                "sh",
                "-c",
                "echo hello from podman",
            ])
            .output()
            .unwrap();
        show(&format!("podman run {extra:?}"), &out);
        out
    };
    let allowed = run(&[], PINNED_IMAGE);
    let denied = run(&["--cap-add=ALL"], PINNED_IMAGE);
    let latest = run(&[], "docker.io/library/busybox:latest");
    let _ = podman()
        .args(["rmi", "-f", "localhost/palisade-busybox:test"])
        .output();
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("hello from podman"));
    assert_denied(&denied, &["capabilities"]);
    assert_denied(&latest, &["image.deniedTag"]);
}

// ----------------------------------------------------------------------------------------
// Issue 14: each bypass class, its probe (what the container could do without the hook),
// then the same container refused with the reason. Probes only read, and end at once.
// ----------------------------------------------------------------------------------------

/// Runs `case` under runc without any hook and returns its stdout: what the container could
/// do before the hook refused it.
fn runc_probe(env: &Env, case: &str, edit: impl FnOnce(&mut Value)) -> String {
    let out = runc(env, &format!("{case}-probe"), Policy::Bundle, |c| {
        edit(c);
        c.as_object_mut().unwrap().remove("hooks");
    });
    assert!(
        out.status.success(),
        "the probe did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn probe_args(config: &mut Value, script: &str) {
    config["process"]["args"] = json!(["sh", "-c", script]);
}

/// The effective capability mask the container's process reports.
fn cap_eff(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Strong capabilities beside runc's defaults (this machine's bounding set lacks
/// CAP_SYS_RESOURCE, so "every capability" cannot start here): SYS_ADMIN, NET_ADMIN,
/// SYS_PTRACE, SYS_MODULE with AUDIT_WRITE, KILL, NET_BIND_SERVICE.
const STRONG_CAPS: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_NET_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_SYS_MODULE",
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
];
/// `CapEff` with exactly [`STRONG_CAPS`] (bits 21, 12, 19, 16, 29, 5, 10).
const STRONG_CAP_EFF: &str = "0000000020291420";

/// Puts [`STRONG_CAPS`] under `process.<key>` and removes `process.capabilities`: Go's
/// decoder lets the last matching key win, and serde_json orders keys (`C` < `c`).
fn strong_capabilities_as(config: &mut Value, key: &str) {
    let caps = json!({"bounding": STRONG_CAPS, "effective": STRONG_CAPS, "permitted": STRONG_CAPS});
    let process = config["process"].as_object_mut().unwrap();
    process.remove("capabilities");
    process.insert(key.to_string(), caps);
}

#[test]
fn class_1_runc_reads_a_capitalised_key_and_the_hook_refuses_the_document() {
    let Some(env) = env() else { return };
    let edit = |c: &mut Value| {
        strong_capabilities_as(c, "Capabilities");
        probe_args(c, "grep CapEff /proc/self/status");
    };
    let probe = runc_probe(env, "c1-capabilities", edit);
    // runc matched `Capabilities` to `capabilities`: CAP_SYS_ADMIN and the rest.
    assert_eq!(cap_eff(&probe), STRONG_CAP_EFF, "{probe}");
    let out = runc(env, "c1-capabilities", Policy::Bundle, edit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("container start denied (fail closed): config.json refused: runtimes could read it differently: `process.Capabilities` is not the key `process.capabilities`"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("CapEff"));
}

/// The network namespace inode of this process (the host's, for the test run as root).
fn host_netns() -> String {
    fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn class_2_runc_joins_the_host_network_through_odd_spellings_and_the_hook_refuses() {
    let Some(env) = env() else { return };
    // This machine does not let even root open /proc/1/ns (the hook then compares with its
    // own namespaces, the runtime's); a task of this test process is another spelling.
    let me = std::process::id();
    let task = format!("/proc/{me}/task/{me}/ns/net");
    for (case, path) in [
        ("c2-double-slash", "//proc/self/ns/net"),
        ("c2-dot-segment", "/proc/./self/ns/net"),
        ("c2-kernel-thread", "/proc/2/ns/net"),
        ("c2-test-task", task.as_str()),
    ] {
        let edit = |c: &mut Value| {
            for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "network" {
                    n["path"] = json!(path);
                }
            }
            probe_args(c, "ls -l /proc/self/ns/net");
        };
        let probe = runc_probe(env, case, edit);
        assert!(probe.contains(&host_netns()), "{path}: {probe}");
        let out = runc(env, case, Policy::Bundle, edit);
        assert_denied(&out, &["hostNetwork"]);
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("which is the host's (same device and inode)"),
            "{path}"
        );
    }
}

#[test]
fn class_2_crun_joins_the_second_network_entry_and_the_hook_refuses_duplicates() {
    let Some(env) = env() else { return };
    ensure_installed("crun", &["crun"]);
    let out = crun(env, "c2-network-twice", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "network", "path": "/proc/self/ns/net"}));
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("lists the `network` namespace more than once"),
        "{stderr}"
    );
}

#[test]
fn class_3_runc_follows_a_relative_symlinked_bind_source_to_the_host_root_and_the_hook_refuses() {
    let Some(env) = env() else { return };
    let case = "c3-symlink-source";
    for name in [format!("{case}-probe"), case.to_string()] {
        let dir = env.dir.join("runc").join(&name);
        fs::create_dir_all(&dir).unwrap();
        let link = dir.join("hostroot");
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("/", &link).unwrap();
        }
    }
    let edit = |c: &mut Value| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/host",
            "type": "bind",
            "source": "hostroot",
            "options": ["rbind", "ro"],
        }));
        probe_args(c, "test -f /host/etc/os-release && echo host-root-visible");
    };
    let probe = runc_probe(env, case, edit);
    assert_eq!(probe, "host-root-visible\n");
    let out = runc(env, case, Policy::Bundle, edit);
    assert_denied(&out, &["hostPath"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`/` (written `hostroot`) at `/host`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn class_4_a_sandbox_annotation_no_longer_skips_the_checks_under_runc() {
    let Some(env) = env() else { return };
    let edit = |c: &mut Value| {
        c["annotations"]["io.kubernetes.cri.container-type"] = json!("sandbox");
        strong_capabilities_as(c, "capabilities");
        probe_args(c, "grep CapEff /proc/self/status");
    };
    let probe = runc_probe(env, "c4-sandbox", edit);
    assert_eq!(cap_eff(&probe), STRONG_CAP_EFF, "{probe}");
    let out = runc(env, "c4-sandbox", Policy::Bundle, edit);
    assert_denied(&out, &["capabilities"]);
}

#[test]
fn class_4_an_annotation_never_exempts_a_host_path_under_runc() {
    let Some(env) = env() else { return };
    // The old exemption took any path under a container store naming the sandbox id of the
    // annotation: `sandbox-id: storage` exempted the whole of podman's storage.
    let store = Path::new("/var/lib/containers/storage");
    if !store.is_dir() {
        skipped(&format!(
            "no {} on this host (podman never ran)",
            store.display()
        ));
        return;
    }
    let edit = |c: &mut Value| {
        c["annotations"]["io.kubernetes.cri.sandbox-id"] = json!("storage");
        c["annotations"]["io.kubernetes.cri.sandbox-uid"] = json!("storage");
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/storage",
            "type": "bind",
            "source": store,
            "options": ["rbind", "ro"],
        }));
        probe_args(c, "test -d /storage && echo store-visible");
    };
    let probe = runc_probe(env, "c4-spoofed-sandbox-id", edit);
    assert_eq!(probe, "store-visible\n");
    let out = runc(env, "c4-spoofed-sandbox-id", Policy::Bundle, edit);
    assert_denied(&out, &["hostPath"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("`/var/lib/containers/storage` at `/storage`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Class 9 (false denials): under real podman with the hook, a named volume and a podman
/// with its own `--root`/`--runroot` start — their binds are podman's own, learned from the
/// bundle podman made, not guessed from fixed paths.
#[test]
fn class_9_podman_named_volumes_and_custom_stores_start_with_the_hook() {
    let Some(env) = env() else { return };
    ensure_installed("podman", &["podman"]);
    let work = env.dir.join("podman-c9");
    let hooks_dir = work.join("hooks.d");
    fs::create_dir_all(&hooks_dir).unwrap();
    let mut hook: Value = serde_json::from_slice(
        &fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks.d/palisade.json")).unwrap(),
    )
    .unwrap();
    hook["hook"]["path"] = json!(hook_bin());
    hook["hook"]["args"] = json!(hook_args(Policy::Bundle, "podman"));
    fs::write(
        hooks_dir.join("palisade.json"),
        serde_json::to_vec_pretty(&hook).unwrap(),
    )
    .unwrap();
    let tar = work.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&env.rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // podman refuses a run root longer than 50 characters: short paths under /tmp.
    let custom = PathBuf::from(format!("/tmp/palisade-c9-{}", std::process::id()));
    let custom_root = custom.join("root");
    let custom_runroot = custom.join("run");
    let stores: [(&str, Vec<String>); 2] = [
        ("default store, named volume", vec![]),
        (
            "custom --root and --runroot",
            vec![
                "--root".into(),
                custom_root.display().to_string(),
                "--runroot".into(),
                custom_runroot.display().to_string(),
            ],
        ),
    ];
    let image = "localhost/palisade-busybox:c9";
    let volume = format!("palisade-c9-{}", std::process::id());
    for (label, globals) in stores {
        let podman = || {
            let mut c = Command::new("podman");
            c.args(&globals)
                .args([
                    "--storage-driver=vfs",
                    "--cgroup-manager=cgroupfs",
                    "--runtime=runc",
                    "--events-backend=file",
                ])
                .arg("--hooks-dir")
                .arg(&hooks_dir)
                .stdin(Stdio::null());
            c
        };
        let out = podman()
            .arg("import")
            .arg(&tar)
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "{label}: podman import: {out:?}");
        let mut run = podman();
        run.args(["run", "--rm", "--network=none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--annotation", &format!("{NAMESPACE}=palisade-test")])
            .args(["--annotation", &format!("{IMAGE}={PINNED_IMAGE}")]);
        let script = if globals.is_empty() {
            let out = podman()
                .args(["volume", "create", &volume])
                .output()
                .unwrap();
            assert!(out.status.success(), "{label}: volume create: {out:?}");
            run.args(["-v", &format!("{volume}:/data")]);
            "test -d /data && echo hello from podman with a volume"
        } else {
            "test -f /etc/hosts && echo hello from podman with its own stores"
        };
        let out = run.args([image, "sh", "-c", script]).output().unwrap();
        show(&format!("podman run ({label})"), &out);
        let _ = podman().args(["rmi", "-f", image]).output();
        if globals.is_empty() {
            let _ = podman().args(["volume", "rm", "-f", &volume]).output();
        }
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("hello from podman with"),
            "{label}"
        );
    }
    let _ = fs::remove_dir_all(&custom);
}

/// The hook's arguments with the bundle fetched from `url` and kept in `kept`.
fn fetch_args(url: &str, kept: &Path, key: &str) -> Value {
    json!([
        "palisade-oci-hook",
        "--bundle-url",
        url,
        "--trusted-key",
        key,
        "--bundle-cache",
        kept,
        "--component",
        component(),
        "--cache-dir",
        cache_dir(),
    ])
}

#[test]
fn runc_starts_by_the_bundle_fetched_from_palisade_serve_then_by_the_persisted_one() {
    use ed25519_dalek::SigningKey;
    use palisade_engine::bundle::public_key_base64;
    let Some(env) = env() else { return };
    let policies = env.dir.join("served-policies");
    fs::create_dir_all(&policies).unwrap();
    fs::copy(policy_yaml(), policies.join("policy.yaml")).unwrap();
    let key = SigningKey::from_bytes(&[1; 32]);
    let trusted = format!("k1={}", public_key_base64(&key.verifying_key()));
    let server = palisade_serve::spawn(palisade_serve::Config {
        recipe: palisade_serve::Recipe {
            paths: vec![policies],
            options: palisade_engine::Options::default(),
            signer: Some(palisade_engine::BundleSigner {
                key_id: "k1".into(),
                key,
            }),
            scopes: vec![palisade_engine::Scope::Mesh],
        },
        http: "127.0.0.1:0".parse().unwrap(),
        debounce: std::time::Duration::from_millis(50),
    })
    .unwrap();
    let url = format!("http://{}/v1/bundles/mesh", server.addr());
    let kept = env.dir.join("fetched-bundles");
    let with_url = |image: &'static str| {
        let args = fetch_args(&url, &kept, &trusted);
        move |c: &mut Value| {
            c["hooks"]["createRuntime"][0]["args"] = args;
            c["annotations"][IMAGE] = json!(image);
        }
    };
    let out = runc(
        env,
        "fetched-allowed",
        Policy::Bundle,
        with_url(PINNED_IMAGE),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from fetched-allowed"));
    let latest = "docker.io/library/busybox:latest";
    let out = runc(env, "fetched-latest", Policy::Bundle, with_url(latest));
    assert_denied(&out, &["image.deniedTag"]);
    assert!(kept.join("last-verified.plsd").exists());

    // The server goes away: the persisted bundle decides.
    drop(server);
    let out = runc(
        env,
        "persisted-allowed",
        Policy::Bundle,
        with_url(PINNED_IMAGE),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = runc(env, "persisted-latest", Policy::Bundle, with_url(latest));
    assert_denied(&out, &["image.deniedTag"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("deciding with the persisted bundle"));

    // Nothing persisted and no server: refused.
    fs::remove_file(kept.join("last-verified.plsd")).unwrap();
    let out = runc(
        env,
        "nothing-persisted",
        Policy::Bundle,
        with_url(PINNED_IMAGE),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("container start denied (fail closed)"),
        "{stderr}"
    );
    assert!(stderr.contains("no bundle is persisted"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hello from"));
}
