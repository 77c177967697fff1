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
    let mut config = env.template.clone();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sh", "-c", format!("echo hello from {case}; id -u")]);
    config["root"] = json!({"path": env.rootfs, "readonly": true});
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
