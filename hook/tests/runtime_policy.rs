//! Issue 14's bypass classes 5–8 under real runtimes: for each, a container that the hook
//! now refuses (with the reason), and the same container started without the hook running a
//! read-only, bounded probe that shows what it could have done (a writable
//! `/proc/sys/kernel/core_pattern`, the host's `/dev/kvm` opened through `mknod`, no seccomp
//! filter, an unsafe sysctl applied). The policy is `testdata/runtime-policy.yaml`.
//!
//! The probes open for writing without writing (`: >> file`: busybox's `test -w` says yes to
//! root whatever the mount), open a device node without using it, read a status line. On this
//! machine (a Firecracker VM) even host root cannot read the disk (`/dev/vda`: EPERM) and
//! `/dev/kmsg` needs `CAP_SYSLOG`, so the device probe is `/dev/kvm` (`c 10:232`).
//!
//! Runtimes need root: as another user every case prints why it is skipped and passes.

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

use common::{cache_dir, component, hook_bin, is_root, scratch, skipped, testdata};

const NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";

/// The probe every container runs: read-only checks, one line each.
const PROBE: &str = r#"echo probe-ran
if (: >> /proc/sys/kernel/core_pattern) 2>/dev/null; then echo core_pattern=writable; else echo core_pattern=read-only; fi
if [ -e /host-proc/sys/kernel/core_pattern ]; then if (: >> /host-proc/sys/kernel/core_pattern) 2>/dev/null; then echo host-proc-core_pattern=writable; else echo host-proc-core_pattern=read-only; fi; fi
if (: >> /sys/kernel/mm/transparent_hugepage/enabled) 2>/dev/null; then echo sysfs=writable; else echo sysfs=read-only; fi
echo "seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2)"
if unshare -U true 2>/dev/null; then echo unshare=allowed; else echo unshare=blocked; fi
echo "msgmax=$(cat /proc/sys/kernel/msgmax)"
if mknod /tmp/kvm c 10 232 2>/dev/null && (: < /tmp/kvm) 2>/dev/null; then echo kvm=openable; else echo kvm=closed; fi
"#;

struct Env {
    dir: PathBuf,
    rootfs: PathBuf,
    template: Value,
    /// Whether the host has `/dev/kvm` for the device probe.
    kvm: bool,
}

/// The fixture, or `None` when not root: the calling test is then recorded as skipped, with
/// the reason (`common::skipped`), and returns.
fn env() -> Option<&'static Env> {
    let env = set_up_env();
    if env.is_none() {
        skipped("real container runtimes need root");
    }
    env
}

fn set_up_env() -> Option<&'static Env> {
    static ENV: OnceLock<Option<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        if !is_root() {
            return None;
        }
        for (bin, pkg) in [("runc", "runc"), ("busybox", "busybox-static")] {
            if !Command::new(bin)
                .arg("--help")
                .output()
                .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
            {
                let ok = Command::new("apt-get")
                    .args(["install", "-y", "-qq", pkg])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "cannot install {pkg}");
            }
        }
        let dir = scratch().join(format!("runtime-policy-{}", std::process::id()));
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "host-proc"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for tool in [
            "sh", "echo", "cat", "grep", "cut", "head", "wc", "mknod", "unshare", "true", "[",
            "test",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
        }
        let spec = dir.join("spec");
        fs::create_dir_all(&spec).unwrap();
        let out = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&spec)
            .output()
            .unwrap();
        assert!(out.status.success(), "runc spec: {out:?}");
        let template =
            serde_json::from_slice(&fs::read(spec.join("config.json")).unwrap()).unwrap();
        let kvm = fs::metadata("/dev/kvm").is_ok();
        cache_dir();
        Some(Env {
            dir,
            rootfs,
            template,
            kvm,
        })
    })
    .as_ref()
}

/// The filtering seccomp profile of `testdata/seccomp-allow-list.json`.
fn allow_list() -> Value {
    let v: Value = serde_json::from_str(
        &fs::read_to_string(testdata().join("seccomp-allow-list.json")).unwrap(),
    )
    .unwrap();
    v["seccomp"].clone()
}

fn config(
    env: &Env,
    case: &str,
    namespace: &str,
    hook: bool,
    edit: impl FnOnce(&mut Value),
) -> Value {
    let mut c = env.template.clone();
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(["sh", "-c", PROBE]);
    c["process"]["env"] = json!(["PATH=/bin"]);
    c["root"] = json!({"path": env.rootfs, "readonly": true});
    c["hostname"] = json!(case);
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777", "size=1m"]}));
    c["linux"]["seccomp"] = allow_list();
    c["annotations"] = json!({NAMESPACE: namespace});
    if hook {
        c["hooks"] = json!({"createRuntime": [{
            "path": hook_bin(),
            "args": ["palisade-oci-hook", "--policy", testdata().join("runtime-policy.yaml"),
                     "--component", component(), "--cache-dir", cache_dir()],
            "timeout": 60,
        }]});
    }
    edit(&mut c);
    c
}

/// `runc run` of the case, with the hook (`hook`) or without it (the probe).
fn runc(
    env: &Env,
    case: &str,
    namespace: &str,
    hook: bool,
    edit: impl FnOnce(&mut Value),
) -> Output {
    let tag = if hook { "hook" } else { "probe" };
    let bundle = env.dir.join("runc").join(format!("{case}-{tag}"));
    fs::create_dir_all(&bundle).unwrap();
    let mut c = config(env, case, namespace, hook, edit);
    rootfs_in(env, &bundle, &mut c);
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&c).unwrap(),
    )
    .unwrap();
    let root = env.dir.join("runc-state");
    let id = format!("pal-{case}-{tag}-{}", std::process::id());
    let out = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["delete", "-f", &id])
        .output();
    show(&format!("runc {case} ({tag})"), &out);
    out
}

/// crun 1.8.1 in a private mount namespace with the cgroup2 mount hidden (it refuses this
/// host's hybrid layout otherwise); the hook's stderr goes to a file crun names.
fn crun(env: &Env, case: &str, hook: bool, edit: impl FnOnce(&mut Value)) -> Output {
    let tag = if hook { "hook" } else { "probe" };
    let bundle = env.dir.join("crun").join(format!("{case}-{tag}"));
    fs::create_dir_all(&bundle).unwrap();
    let log = bundle.join("hook-stderr.log");
    let _ = fs::remove_file(&log);
    let mut c = config(env, case, "palisade-test", hook, edit);
    c["annotations"]["run.oci.hooks.stderr"] = json!(log);
    rootfs_in(env, &bundle, &mut c);
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&c).unwrap(),
    )
    .unwrap();
    let root = env.dir.join("crun-state");
    let id = format!("pal-{case}-{tag}-{}", std::process::id());
    let script = format!(
        "umount /sys/fs/cgroup/unified 2>/dev/null; crun --cgroup-manager=cgroupfs --root '{r}' run --bundle '{b}' '{id}'; rc=$?; crun --root '{r}' delete -f '{id}' >/dev/null 2>&1; exit $rc",
        r = root.display(),
        b = bundle.display()
    );
    let mut out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out.stderr.extend(fs::read(&log).unwrap_or_default());
    show(&format!("crun {case} ({tag})"), &out);
    out
}

/// The root filesystem hard-linked into the bundle (`rootfs`) unless the case set its own
/// root: a root outside the bundle or a container store is host storage to the hook.
fn rootfs_in(env: &Env, bundle: &Path, c: &mut Value) {
    if c["root"]["path"] != json!(env.rootfs) {
        return;
    }
    let rootfs = bundle.join("rootfs");
    if !rootfs.exists() {
        let ok = Command::new("cp")
            .arg("-al")
            .arg(&env.rootfs)
            .arg(&rootfs)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot link the root filesystem into {}",
            bundle.display()
        );
    }
    c["root"]["path"] = json!("rootfs");
}

fn show(what: &str, out: &Output) {
    eprintln!(
        "--- {what}: {}\n[stdout]\n{}[stderr]\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_refused(out: &Output, policy: &str, control: &str, reason: &str) {
    // runc logs the hook's stderr inside a quoted message: `\"` and `\n` escaped.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace("\\\"", "\"")
        .replace("\\n", "\n");
    assert!(!out.status.success(), "the container started: {stderr}");
    assert!(
        stderr.contains(&format!("palisade-test/{policy} [{control}]: ")),
        "no [{control}] in {stderr}"
    );
    assert!(stderr.contains(reason), "`{reason}` not in {stderr}");
    assert!(!stdout(out).contains("probe-ran"), "the process ran");
}

fn assert_probe(out: &Output, lines: &[&str]) {
    let text = stdout(out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in lines {
        assert!(text.lines().any(|x| x == *l), "`{l}` not in:\n{text}");
    }
}

fn remove(c: &mut Value, pointer: &str, key: &str) {
    if let Some(o) = c.pointer_mut(pointer).and_then(Value::as_object_mut) {
        o.remove(key);
    }
}

#[test]
fn runc_starts_a_compliant_container_whose_probe_finds_everything_closed() {
    let Some(env) = env() else { return };
    let out = runc(env, "compliant", "palisade-test", true, |c| {
        c["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
        c["process"]["capabilities"]["effective"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
        c["process"]["capabilities"]["permitted"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
    });
    assert_probe(
        &out,
        &[
            "core_pattern=read-only",
            "sysfs=read-only",
            "seccomp=2",
            "unshare=blocked",
            "msgmax=8192",
            "kvm=closed",
        ],
    );
}

/// Class 5: `/proc/sys` left out of `readonlyPaths` and a token `maskedPaths`.
fn unmasked_proc_sys(c: &mut Value) {
    c["linux"]["maskedPaths"] = json!(["/x"]);
    c["linux"]["readonlyPaths"] =
        json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"]);
}

#[test]
fn runc_refuses_an_unmasked_proc_sys_where_core_pattern_was_writable() {
    let Some(env) = env() else { return };
    let out = runc(env, "unmasked", "palisade-test", true, unmasked_proc_sys);
    assert_refused(
        &out,
        "baseline",
        "procMount",
        "not read-only: `/proc/asound`, `/proc/sys`;",
    );
    let out = runc(env, "unmasked", "palisade-test", false, unmasked_proc_sys);
    assert_probe(&out, &["core_pattern=writable"]);
}

fn extra_proc(c: &mut Value) {
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/host-proc", "type": "proc", "source": "proc"}));
}

#[test]
fn runc_refuses_an_extra_proc_mount_where_core_pattern_was_writable() {
    let Some(env) = env() else { return };
    let out = runc(env, "extra-proc", "palisade-test", true, extra_proc);
    assert_refused(
        &out,
        "baseline",
        "kernelMounts",
        "a `proc` mount at `/host-proc`",
    );
    let out = runc(env, "extra-proc", "palisade-test", false, extra_proc);
    assert_probe(
        &out,
        &["core_pattern=read-only", "host-proc-core_pattern=writable"],
    );
}

fn writable_sysfs(c: &mut Value) {
    for m in c["mounts"].as_array_mut().unwrap() {
        if m["type"] == "sysfs" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
        }
    }
}

#[test]
fn runc_refuses_a_writable_sysfs_that_was_writable() {
    let Some(env) = env() else { return };
    let out = runc(env, "rw-sysfs", "palisade-test", true, writable_sysfs);
    assert_refused(
        &out,
        "baseline",
        "kernelMounts",
        "a writable `sysfs` at `/sys`",
    );
    let out = runc(env, "rw-sysfs", "palisade-test", false, writable_sysfs);
    assert_probe(&out, &["sysfs=writable"]);
}

fn identity_userns(c: &mut Value) {
    c["linux"]["maskedPaths"] = json!([]);
    c["linux"]["readonlyPaths"] = json!([]);
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
}

#[test]
fn runc_refuses_an_identity_user_namespace_with_proc_unmasked_where_core_pattern_was_writable() {
    let Some(env) = env() else { return };
    let out = runc(
        env,
        "identity-userns",
        "palisade-test",
        true,
        identity_userns,
    );
    assert_refused(
        &out,
        "baseline",
        "procMount",
        "not read-only: `/proc/asound`, `/proc/bus`",
    );
    let out = runc(
        env,
        "identity-userns",
        "palisade-test",
        false,
        identity_userns,
    );
    assert_probe(&out, &["core_pattern=writable"]);
}

fn allow_all_devices(c: &mut Value) {
    for set in ["bounding", "effective", "permitted"] {
        c["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
    }
    c["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "access": "rwm"}));
}

#[test]
fn runc_refuses_allow_all_devices_with_mknod_where_the_hosts_kvm_opened() {
    let Some(env) = env() else { return };
    let out = runc(env, "all-devices", "palisade-test", true, allow_all_devices);
    assert_refused(&out, "baseline", "devices", "`a *:*` `rw` (rule 1)");
    if !env.kvm {
        skipped("the probe half: this host has no /dev/kvm to open (the refusal was checked)");
        return;
    }
    let out = runc(
        env,
        "all-devices",
        "palisade-test",
        false,
        allow_all_devices,
    );
    assert_probe(&out, &["kvm=openable"]);
}

fn no_device_rules(c: &mut Value) {
    allow_all_devices(c);
    remove(c, "/linux", "resources");
}

/// runc 1.1.5 itself denies every device no rule allows (its cgroup emulator starts from
/// deny): the probe shows it. Palisade refuses the spec anyway: a cgroup v1 hierarchy starts
/// from allow, and what another runtime or cgroup manager makes of no rules is not runc's.
#[test]
fn runc_refuses_a_container_without_device_rules_which_runc_itself_would_close() {
    let Some(env) = env() else { return };
    let out = runc(
        env,
        "no-device-rules",
        "palisade-test",
        true,
        no_device_rules,
    );
    assert_refused(
        &out,
        "baseline",
        "devices",
        "no rule `{\"allow\": false, \"access\": \"rwm\"}` denies all devices first",
    );
    let out = runc(
        env,
        "no-device-rules",
        "palisade-test",
        false,
        no_device_rules,
    );
    assert_probe(&out, &["kvm=closed"]);
}

fn seccomp_empty(c: &mut Value) {
    c["linux"]["seccomp"] = json!({});
}

fn seccomp_allow(c: &mut Value) {
    c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                   "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]});
}

#[test]
fn runc_refuses_seccomp_profiles_that_filter_nothing() {
    let Some(env) = env() else { return };
    let out = runc(env, "seccomp-empty", "palisade-test", true, seccomp_empty);
    assert_refused(&out, "baseline", "seccomp", "has no `defaultAction`");
    let out = runc(env, "seccomp-empty", "palisade-test", false, seccomp_empty);
    assert_probe(&out, &["seccomp=0", "unshare=allowed"]);
    let out = runc(env, "seccomp-allow", "palisade-test", true, seccomp_allow);
    assert_refused(&out, "baseline", "seccomp", "is `SCMP_ACT_ALLOW`");
    let out = runc(env, "seccomp-allow", "palisade-test", false, seccomp_allow);
    assert_probe(&out, &["seccomp=2", "unshare=allowed"]);
}

fn sandbox_sysctl(c: &mut Value) {
    c["annotations"]["io.kubernetes.cri.container-type"] = json!("sandbox");
    c["linux"]["sysctl"] = json!({"kernel.msgmax": "65536"});
}

#[test]
fn runc_refuses_a_sandbox_with_an_unsafe_sysctl_that_was_applied() {
    let Some(env) = env() else { return };
    let out = runc(env, "sandbox-sysctl", "palisade-test", true, sandbox_sysctl);
    assert_refused(&out, "baseline", "sysctls", "`kernel.msgmax`");
    let out = runc(
        env,
        "sandbox-sysctl",
        "palisade-test",
        false,
        sandbox_sysctl,
    );
    assert_probe(&out, &["msgmax=65536"]);
}

/// This kernel has no AppArmor: no probe can show a difference here, the refusal and its
/// reason are what is shown. (SELinux cannot be shown under runc here at all: runc 1.1.5
/// itself refuses a `selinuxLabel` on a kernel without SELinux, before any hook runs.)
#[test]
fn runc_refuses_an_absent_apparmor_profile_where_the_policy_requires_one() {
    let Some(env) = env() else { return };
    let out = runc(env, "apparmor-absent", "palisade-lsm", true, |_| {});
    assert_refused(
        &out,
        "lsm",
        "appArmor",
        "`process.apparmorProfile` is absent",
    );
}

#[test]
fn crun_refuses_an_allow_by_default_seccomp_and_an_extra_proc_mount_that_it_would_run() {
    let Some(env) = env() else { return };
    if !Command::new("crun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-qq", "crun"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot install crun");
    }
    // crun 1.8.1 refuses `seccomp: {}` itself (runc runs it unfiltered, above).
    let out = crun(env, "seccomp-empty", false, seccomp_empty);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Required field 'defaultAction' not present"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crun(env, "seccomp-allow", true, seccomp_allow);
    assert_refused(&out, "baseline", "seccomp", "is `SCMP_ACT_ALLOW`");
    let out = crun(env, "seccomp-allow", false, seccomp_allow);
    assert_probe(&out, &["seccomp=2", "unshare=allowed"]);
    let out = crun(env, "extra-proc", true, extra_proc);
    assert_refused(
        &out,
        "baseline",
        "kernelMounts",
        "a `proc` mount at `/host-proc`",
    );
    let out = crun(env, "extra-proc", false, extra_proc);
    assert_probe(&out, &["host-proc-core_pattern=writable"]);
}
