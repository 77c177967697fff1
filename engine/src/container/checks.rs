//! The privilege checks that look at what the runtime will actually do, not at whether a
//! field is present: `/proc` and `/sys` (the runtime's default masked and read-only sets,
//! extra `proc` mounts, writable `sysfs`), devices (cgroup rules and device nodes), seccomp
//! (a filter that filters), AppArmor (absent is unconfined), SELinux (type, user and role)
//! and sysctls (Kubernetes' safe set, on sandboxes too). `docs/container-policy.md` maps
//! each to the Pod Security Standards check it stands for.

use super::{
    AppArmor, OciConfig, OciDevice, OciDeviceCgroup, OciLinux, OciProcess, Privileges, ProcMount,
    Report, ticks,
};
use crate::container::host::{clean_path, path_under};

// ----------------------------------------------------------------------------------------
// /proc and /sys
// ----------------------------------------------------------------------------------------

/// The paths `procMount: Default` requires: each `masked` path must be in
/// `linux.maskedPaths`, each `readonly` path in `linux.readonlyPaths` or `linux.maskedPaths`
/// (masked is stricter). A listed ancestor covers a path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcPaths {
    /// The preset named (`common`, `runc`, …) or `custom`, for messages.
    pub name: String,
    /// Must be masked.
    pub masked: Vec<String>,
    /// Must be read-only (or masked).
    pub readonly: Vec<String>,
}

/// Masked by every supported runtime by default: runc 1.1 (`runc spec`), crun 1.8 (`crun spec`), the
/// kubelet's CRI defaults (`pkg/securitycontext/util.go`, what containerd and CRI-O apply for
/// `procMount: Default`), containerd's own (`pkg/oci/spec.go`) and podman's
/// (containers/common `pkg/config/default.go`).
const COMMON_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Read-only (or masked) by every supported runtime by default; `/proc/asound` is masked by
/// runc, crun and the kubelet, read-only by podman and older kubelets.
const COMMON_READONLY: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The presets `procMountPaths` names, each a runtime's default sets.
pub const PROC_PRESETS: &[&str] = &["common", "runc", "crun", "kubelet", "containerd", "podman"];

impl ProcPaths {
    /// The sets every supported runtime applies by default (the level default).
    pub fn common() -> ProcPaths {
        ProcPaths::preset("common").unwrap_or_else(|| ProcPaths {
            name: String::new(),
            masked: Vec::new(),
            readonly: Vec::new(),
        })
    }

    /// A runtime's default sets, as that runtime writes them into `config.json`.
    pub fn preset(name: &str) -> Option<ProcPaths> {
        let own = |l: &[&str]| l.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        let with = |extra: &[&str]| own(&[COMMON_MASKED, extra].concat());
        let readonly_but_asound = || {
            let mut r = own(COMMON_READONLY);
            r.retain(|p| p != "/proc/asound");
            r
        };
        let (masked, readonly) = match name {
            "common" => (own(COMMON_MASKED), own(COMMON_READONLY)),
            // `runc spec` 1.1.5 and `crun spec` 1.8.1: /proc/asound masked.
            "runc" | "crun" => (with(&["/proc/asound"]), readonly_but_asound()),
            // kubelet ≥ 1.31 (`defaultMaskedPaths`) and containerd's `populateDefaultUnixSpec`:
            // /proc/asound and /sys/devices/virtual/powercap masked too.
            "kubelet" | "containerd" => (
                with(&["/proc/asound", "/sys/devices/virtual/powercap"]),
                readonly_but_asound(),
            ),
            // containers/common `DefaultMaskedPaths` / `DefaultReadOnlyPaths` as podman 4.3.1
            // writes them (recorded in `hook/testdata/podman`; later releases add powercap).
            "podman" => (
                with(&["/sys/dev/block", "/sys/fs/selinux"]),
                own(COMMON_READONLY),
            ),
            _ => return None,
        };
        Some(ProcPaths {
            name: name.to_string(),
            masked,
            readonly,
        })
    }
}

/// Whether `list` names `path` or an ancestor of it (paths compared cleaned).
fn covers(list: &[String], path: &str) -> bool {
    let path = clean_path(path);
    list.iter().any(|e| path_under(&path, &clean_path(e)))
}

/// A user namespace the runtime creates (no `path`) whose `linux.uidMappings` map no
/// container uid to host uid 0: root in the container is not root on the host, so files
/// owned by host root under `/proc` and `/sys` stay unwritable whatever is masked (PSS lets
/// `procMount` be anything with `hostUsers: false`). An identity mapping (`0 → 0`) is no
/// user namespace for this purpose, and a joined one (`path`) shows no mapping to judge.
pub(super) fn unprivileged_userns(linux: Option<&OciLinux>) -> bool {
    let Some(l) = linux else { return false };
    let mut users = l.namespaces.iter().filter(|n| n.kind == "user").peekable();
    users.peek().is_some()
        && users.all(|n| n.path.as_deref().is_none_or(str::is_empty))
        && !l.uid_mappings.is_empty()
        && !l.uid_mappings.iter().any(|m| m.size > 0 && m.host_id == 0)
}

/// `procMount: Default`: the runtime's default masked and read-only sets are all there.
pub(super) fn check_proc_mount(p: &Privileges, linux: Option<&OciLinux>, out: &mut Report<'_>) {
    if p.proc_mount != ProcMount::Default || unprivileged_userns(linux) {
        return;
    }
    let empty = Vec::new();
    let masked = linux.map_or(&empty, |l| &l.masked_paths);
    let readonly = linux.map_or(&empty, |l| &l.readonly_paths);
    let unmasked: Vec<&str> = p
        .proc_paths
        .masked
        .iter()
        .filter(|m| !covers(masked, m))
        .map(String::as_str)
        .collect();
    let writable: Vec<&str> = p
        .proc_paths
        .readonly
        .iter()
        .filter(|r| !covers(readonly, r) && !covers(masked, r))
        .map(String::as_str)
        .collect();
    let mut missing = Vec::new();
    if !unmasked.is_empty() {
        missing.push(format!("not masked: {}", ticks(&unmasked)));
    }
    if !writable.is_empty() {
        missing.push(format!("not read-only: {}", ticks(&writable)));
    }
    if !missing.is_empty() {
        out.add(
            "procMount",
            format!(
                "`/proc` is not the runtime's default (`{}` sets in `linux.maskedPaths` and `linux.readonlyPaths`): {}; procMount `Default` is required",
                p.proc_paths.name,
                missing.join("; ")
            ),
        );
    }
}

/// Kernel filesystems no container gets but a privileged one: they show or change the host
/// kernel whatever namespaces the container has.
const HOST_KERNEL_FS: &[&str] = &[
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "efivarfs",
    "configfs",
    "binfmt_misc",
    "pstore",
    "devtmpfs",
];

/// With `procMount: Default`: no `proc` mount but the one at `/proc` (another one is a
/// `/proc` the masks do not cover), `sysfs` only read-only, no host kernel filesystem.
pub(super) fn check_kernel_mounts(p: &Privileges, config: &OciConfig, out: &mut Report<'_>) {
    if p.proc_mount != ProcMount::Default {
        return;
    }
    let exempt = unprivileged_userns(config.linux.as_ref());
    let mut bad: Vec<String> = Vec::new();
    let mut procs = 0usize;
    for m in &config.mounts {
        let kind = m.kind.as_deref().unwrap_or("");
        let dest = clean_path(&m.destination);
        // As runc and crun read the options: in order, the last of `ro` and `rw` wins.
        let ro = m
            .options
            .iter()
            .rev()
            .find(|o| *o == "ro" || *o == "rw")
            .is_some_and(|o| o == "ro");
        match kind {
            "proc" => {
                procs += 1;
                if !exempt && (dest != "/proc" || procs > 1) {
                    bad.push(format!(
                        "a `proc` mount at `{}` (only the one at `/proc` is masked)",
                        m.destination
                    ));
                }
            }
            "sysfs" if !exempt && !ro => bad.push(format!(
                "a writable `sysfs` at `{}` (no `ro` option)",
                m.destination
            )),
            k if HOST_KERNEL_FS.contains(&k) => {
                bad.push(format!("a `{k}` mount at `{}`", m.destination));
            }
            _ => {}
        }
    }
    if !bad.is_empty() {
        out.add(
            "kernelMounts",
            format!(
                "the container mounts {}; with procMount `Default` only one `proc` at `/proc`, a read-only `sysfs` and no host kernel filesystem are allowed",
                bad.join(", ")
            ),
        );
    }
}

// ----------------------------------------------------------------------------------------
// Devices
// ----------------------------------------------------------------------------------------

/// A device allowed for reading and writing: `c 10:229`, `c 136:*` (`*`: any number).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DevicePattern {
    /// As written.
    pub text: String,
    /// `c` or `b`.
    pub kind: char,
    /// `None`: any.
    pub major: Option<i64>,
    /// `None`: any.
    pub minor: Option<i64>,
}

impl DevicePattern {
    /// Reads `c 1:3`, `c 136:*`, `b 8:*`.
    pub fn parse(text: &str) -> Option<DevicePattern> {
        let mut parts = text.split_whitespace();
        let kind = match parts.next()? {
            "c" => 'c',
            "b" => 'b',
            _ => return None,
        };
        let (major, minor) = parts.next()?.split_once(':')?;
        if parts.next().is_some() {
            return None;
        }
        let num = |s: &str| -> Option<Option<i64>> {
            if s == "*" {
                Some(None)
            } else {
                s.parse::<i64>().ok().filter(|n| *n >= 0).map(Some)
            }
        };
        Some(DevicePattern {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            kind,
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

/// The device nodes every runtime gives a container read-write (runc's `AllowedDevices` in
/// `libcontainer/specconv`, containerd's `WithDefaultUnixDevices`, podman's defaults):
/// null, zero, full, random, urandom, tty, console, ptmx, the pty slaves and tun.
pub const DEFAULT_DEVICES: &[&str] = &[
    "c 1:3", "c 1:5", "c 1:7", "c 1:8", "c 1:9", "c 5:0", "c 5:1", "c 5:2", "c 136:*", "c 10:200",
];

/// A device class a rule or node names: type (`a`, `b`, `c`), major, minor (`None`: any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class {
    kind: char,
    major: Option<i64>,
    minor: Option<i64>,
}

impl Class {
    fn of_rule(r: &OciDeviceCgroup) -> Class {
        let kind = match r.kind.as_deref().unwrap_or("a") {
            "b" => 'b',
            "c" | "u" => 'c',
            // `a`, empty, and anything unknown: all devices (the widest reading).
            _ => 'a',
        };
        let num = |n: Option<i64>| n.filter(|n| *n >= 0);
        Class {
            kind,
            major: num(r.major),
            minor: num(r.minor),
        }
    }

    /// Whether every device of `other` is in `self`.
    fn contains(&self, other: &Class) -> bool {
        (self.kind == 'a' || self.kind == other.kind)
            && self.major.is_none_or(|m| other.major == Some(m))
            && self.minor.is_none_or(|m| other.minor == Some(m))
    }

    fn text(&self) -> String {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        format!("{} {}:{}", self.kind, n(self.major), n(self.minor))
    }
}

fn allowed_class(allowed: &[DevicePattern], c: &Class) -> bool {
    allowed.iter().any(|p| {
        Class {
            kind: p.kind,
            major: p.major,
            minor: p.minor,
        }
        .contains(c)
    })
}

/// The read/write access (`r`, `w`) a rule grants or denies; an allow rule without `access`
/// is read as `rwm` (the widest), a deny rule without it denies nothing.
fn rw(r: &OciDeviceCgroup) -> (bool, bool) {
    match r.access.as_deref() {
        None | Some("") if r.allow => (true, true),
        None | Some("") => (false, false),
        Some(a) => (a.contains('r'), a.contains('w')),
    }
}

/// Devices: the device cgroup rules (`linux.resources.devices`, evaluated in order, the
/// last matching rule wins, from a start that allows everything) must not let the container
/// read or write a device outside `allowed`, and `linux.devices` must not pass one in. An
/// allow-all rule with `CAP_MKNOD` (a baseline capability) is the host's disks and
/// `/dev/mem`: PSS `privileged`.
pub(super) fn check_devices(
    allowed: Option<&Vec<DevicePattern>>,
    linux: Option<&OciLinux>,
    out: &mut Report<'_>,
) {
    let Some(allowed) = allowed else { return };
    let empty = Vec::new();
    let rules = linux
        .and_then(|l| l.resources.as_ref())
        .map_or(&empty, |r| &r.devices);
    let mut bad: Vec<String> = Vec::new();
    // The implicit start: everything allowed (cgroup v1's root; a spec must deny it).
    let start = OciDeviceCgroup {
        allow: true,
        kind: Some("a".into()),
        major: None,
        minor: None,
        access: Some("rwm".into()),
    };
    for (i, rule) in std::iter::once(&start).chain(rules.iter()).enumerate() {
        if !rule.allow {
            continue;
        }
        let class = Class::of_rule(rule);
        let (r, w) = rw(rule);
        if (!r && !w) || (class.kind != 'a' && allowed_class(allowed, &class)) {
            continue;
        }
        // Covered when a later deny rule takes back every granted access on the whole class.
        let later = rules.iter().skip(i);
        let (mut r_left, mut w_left) = (r, w);
        for d in later.filter(|d| !d.allow) {
            if Class::of_rule(d).contains(&class) {
                let (dr, dw) = rw(d);
                r_left &= !dr;
                w_left &= !dw;
            }
        }
        if r_left || w_left {
            let access = format!(
                "{}{}",
                if r_left { "r" } else { "" },
                if w_left { "w" } else { "" }
            );
            bad.push(if i == 0 {
                format!(
                    "every device `{access}` (no rule `{{\"allow\": false, \"access\": \"rwm\"}}` denies all devices first)"
                )
            } else {
                format!("`{}` `{access}` (rule {})", class.text(), i - 1)
            });
        }
    }
    let nodes: &[OciDevice] = linux.map_or(&[], |l| l.devices.as_slice());
    for d in nodes {
        if let Some(c) = node_class(d)
            && !allowed_class(allowed, &c)
        {
            bad.push(format!("the device node `{}` (`{}`)", d.path, c.text()));
        }
    }
    if !bad.is_empty() {
        let texts: Vec<&str> = allowed.iter().map(|p| p.text.as_str()).collect();
        out.add(
            "devices",
            format!(
                "the container can read or write host devices: {} (in `linux.resources.devices` and `linux.devices`); allowed devices: {}",
                bad.join(", "),
                ticks(&texts)
            ),
        );
    }
}

/// A device node's class; `None` for a FIFO (no host device behind it).
fn node_class(d: &OciDevice) -> Option<Class> {
    let kind = match d.kind.as_str() {
        "p" => return None,
        "b" => 'b',
        // `c`, `u` (unbuffered character device) and anything unknown.
        _ => 'c',
    };
    Some(Class {
        kind,
        major: Some(d.major),
        minor: Some(d.minor),
    })
}

// ----------------------------------------------------------------------------------------
// Seccomp
// ----------------------------------------------------------------------------------------

/// Default actions that refuse what no rule allows: an allow-list, as every runtime's
/// default profile is.
const BLOCKING_ACTIONS: &[&str] = &[
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
];

/// Syscalls no runtime's default profile allows a container without capabilities that
/// `restricted` forbids (moby's and containerd's `default.json`: kernel modules, kexec,
/// mounts and namespaces, keyrings, BPF, perf, raw I/O, the clock, reboot, swap,
/// `open_by_handle_at`).
const NEVER_ALLOWED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "init_module",
    "iopl",
    "ioperm",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "userfaultfd",
    "vm86",
    "vm86old",
];

/// `seccompRequired`: `linux.seccomp` must be a filter that filters. runc and crun install
/// none for `{}` or a profile without `defaultAction`; `SCMP_ACT_ALLOW` or `SCMP_ACT_LOG` as
/// the default lets through every syscall no rule names. Required: a blocking default
/// action, and no rule allowing unconditionally a syscall of [`NEVER_ALLOWED`]. PSS accepts
/// any `Localhost` profile; here its content is judged as RuntimeDefault's would be.
pub(super) fn check_seccomp(required: bool, linux: Option<&OciLinux>, out: &mut Report<'_>) {
    if !required {
        return;
    }
    let why = match linux.and_then(|l| l.seccomp.as_ref()) {
        None => Some(
            "the container has no seccomp profile (`linux.seccomp` is absent: unconfined)"
                .to_string(),
        ),
        Some(s) => seccomp_weakness(s),
    };
    if let Some(why) = why {
        out.add(
            "seccomp",
            format!("{why}; a filtering profile is required (RuntimeDefault, or a Localhost profile that blocks by default)"),
        );
    }
}

fn seccomp_weakness(s: &serde_json::Value) -> Option<String> {
    let Some(obj) = s.as_object() else {
        return Some("`linux.seccomp` is not an object".into());
    };
    let action = obj
        .get("defaultAction")
        .and_then(|a| a.as_str())
        .unwrap_or("");
    if action.is_empty() {
        return Some(
            "`linux.seccomp` has no `defaultAction`, so the runtime installs no filter".into(),
        );
    }
    if !BLOCKING_ACTIONS.contains(&action) {
        return Some(format!(
            "`linux.seccomp.defaultAction` is `{action}`: every syscall no rule names is let through"
        ));
    }
    let mut opened: Vec<&str> = Vec::new();
    for rule in obj
        .get("syscalls")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        let act = rule.get("action").and_then(|a| a.as_str()).unwrap_or("");
        let conditional = rule
            .get("args")
            .and_then(|a| a.as_array())
            .is_some_and(|a| !a.is_empty());
        if BLOCKING_ACTIONS.contains(&act) || conditional {
            continue;
        }
        for name in rule
            .get("names")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
        {
            if NEVER_ALLOWED.contains(&name) && !opened.contains(&name) {
                opened.push(name);
            }
        }
    }
    (!opened.is_empty()).then(|| {
        format!(
            "`linux.seccomp` lets through {} (action other than a block, no argument condition), which no runtime default profile allows",
            ticks(&opened)
        )
    })
}

// ----------------------------------------------------------------------------------------
// AppArmor, SELinux
// ----------------------------------------------------------------------------------------

/// AppArmor: `unconfined` is refused unless `any`; an absent profile is refused by
/// `required` (the level default): containerd writes no `apparmorProfile` for Unconfined
/// (and for privileged containers), and runc and crun apply none when it is absent — only
/// on nodes without AppArmor is absent the norm (`notUnconfined`). Which runtime wrote the
/// spec is not asked: the annotations that would say are the caller's.
pub(super) fn check_apparmor(mode: AppArmor, process: Option<&OciProcess>, out: &mut Report<'_>) {
    let profile = process
        .and_then(|pr| pr.apparmor_profile.as_deref())
        .filter(|s| !s.is_empty());
    match (mode, profile) {
        (AppArmor::NotUnconfined | AppArmor::Required, Some("unconfined")) => out.add(
            "appArmor",
            "the container runs with AppArmor profile `unconfined`; a confining profile is required".into(),
        ),
        (AppArmor::Required, None) => out.add(
            "appArmor",
            "the container has no AppArmor profile (`process.apparmorProfile` is absent: how containerd writes Unconfined, and no runtime applies one then); a profile is required (on nodes without AppArmor, set `appArmor: notUnconfined`)".into(),
        ),
        _ => {}
    }
}

/// SELinux: the label `user:role:type:level` in `process.selinuxLabel`. PSS baseline
/// (`check_seLinuxOptions`) allows a few types and forbids setting the user and the role;
/// in `config.json` the runtime fills them from the node's defaults (`system_u`,
/// `system_r`), so anything else was set by the pod. No label passes (no SELinux).
pub(super) fn check_selinux(p: &Privileges, process: Option<&OciProcess>, out: &mut Report<'_>) {
    let Some(label) = process
        .and_then(|pr| pr.selinux_label.as_deref())
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    let mut fields = label.split(':');
    let (user, role, ty) = (
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
    );
    let mut bad: Vec<String> = Vec::new();
    for (allowed, value, what) in [
        (&p.selinux_types, ty, "type"),
        (&p.selinux_users, user, "user"),
        (&p.selinux_roles, role, "role"),
    ] {
        if let Some(list) = allowed
            && !list.iter().any(|a| a == value)
        {
            bad.push(format!("{what} `{value}` (allowed: {})", ticks(list)));
        }
    }
    if !bad.is_empty() {
        out.add(
            "selinux",
            format!(
                "the container's SELinux label `{label}` has {}",
                bad.join(", ")
            ),
        );
    }
}

// ----------------------------------------------------------------------------------------
// Sysctls
// ----------------------------------------------------------------------------------------

/// A sysctl name as Kubernetes reads it: with `/` as the first separator, `/` and `.` swap
/// (`net/ipv4/ip_forward` is `net.ipv4.ip_forward`).
pub(super) fn normalize_sysctl(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.get(i..=i) == Some("/") => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// `allowedSysctls` over `linux.sysctl`. containerd puts a pod's sysctls in the sandbox's
/// spec only, so sandboxes are checked too.
pub(super) fn check_sysctls(
    allowed: Option<&Vec<String>>,
    linux: Option<&OciLinux>,
    out: &mut Report<'_>,
) {
    let Some(allowed) = allowed else { return };
    let bad: Vec<String> = linux
        .into_iter()
        .flat_map(|l| l.sysctl.keys())
        .filter(|k| {
            let k = normalize_sysctl(k);
            !allowed.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => k.starts_with(prefix),
                None => k == *a,
            })
        })
        .cloned()
        .collect();
    if !bad.is_empty() {
        out.add(
            "sysctls",
            format!(
                "the container sets sysctls {} (in `linux.sysctl`); allowed: {}",
                ticks(&bad),
                ticks(allowed)
            ),
        );
    }
}

#[cfg(test)]
mod tests;
