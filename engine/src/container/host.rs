//! What the host knows about a container start that `config.json` alone does not say, and
//! the checks that use it: host namespaces by identity, every mount's effective source, the
//! root filesystem, and the runtime's own managed paths.
//!
//! The OCI hook gathers [`HostFacts`] on the host at hook time (`palisade-oci-hook`,
//! `hook/src/host.rs`): it opens each namespace path and compares its device and inode with
//! the host's, resolves each bind source and `root.path` as the runtime does (relative to
//! the bundle, symlinks followed), learns the container stores' roots from their
//! configuration, and proves which pod sandbox the container belongs to by the namespaces
//! it shares with that sandbox's process. NRI passes what containerd tells it. Without facts
//! (`palisade` offline, a replay) the engine judges by spelling, conservatively.
//!
//! Nothing here is keyed on what the author of `config.json` sets: annotations and the
//! container id never exempt a path.

use serde::{Deserialize, Serialize};

use crate::container::{HostPath, OciConfig, OciLinux, OciMount};

/// Facts about a container start gathered on the host (JSON, camelCase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostFacts {
    /// The bundle directory, symlinks resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Each `linux.namespaces` entry with a `path`: whether it names the host's namespace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceFact>,
    /// Bind mounts' sources as the runtime resolves them, by index in `mounts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountFact>,
    /// `root.path` as the runtime resolves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathFact>,
    /// Roots of the container stores on this host (containers/storage `graphroot` and
    /// `runroot`), from their configuration; named volumes and image layers live there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storage_roots: Vec<String>,
    /// The pod sandbox the container was proven to belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxFact>,
    /// Provenance attestations the host holds (the OCI hook's `--attestations DIR`), for
    /// `images.provenance`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<crate::provenance::Attestation>,
}

/// What a namespace path names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NamespaceFact {
    /// The namespace type (`network`, `pid`, …).
    pub kind: String,
    /// The path as written.
    pub path: String,
    /// The same namespace (device and inode) as the host's; `None`: could not be told.
    pub host: Option<bool>,
    /// Why it could not be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One mount's source on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MountFact {
    /// Index in `mounts`.
    pub index: usize,
    /// The source, resolved.
    pub source: PathFact,
}

/// A path as written and as resolved on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PathFact {
    /// As written.
    pub path: String,
    /// Absolute, symlinks resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// Why it could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The pod sandbox a container belongs to, and the directories the runtime and kubelet
/// keep for that pod (its hosts, hostname, resolv.conf, shm; kubelet's volumes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SandboxFact {
    /// The sandbox id.
    pub id: String,
    /// The pod uid, from the sandbox's own spec or the runtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Directories of this pod that bind mounts may come from.
    pub dirs: Vec<String>,
    /// How the sandbox was established (for messages).
    pub proof: String,
}

impl SandboxFact {
    /// The sandbox as a CRI runtime names it (NRI: containerd's `pod_sandbox_id` and the pod
    /// uid), with the default directories of containerd's CRI plugin, CRI-O and kubelet.
    pub fn from_runtime(id: &str, pod_uid: Option<&str>) -> SandboxFact {
        let mut dirs = Vec::new();
        if safe_component(id) {
            for root in ["/var/lib/containerd", "/run/containerd"] {
                dirs.push(format!("{root}/io.containerd.grpc.v1.cri/sandboxes/{id}"));
            }
            for root in ["/run/containers/storage", "/var/lib/containers/storage"] {
                dirs.push(format!("{root}/overlay-containers/{id}/userdata"));
            }
        }
        if let Some(uid) = pod_uid.filter(|u| safe_component(u)) {
            dirs.push(format!("/var/lib/kubelet/pods/{uid}"));
        }
        SandboxFact {
            id: id.to_string(),
            pod_uid: pod_uid.map(str::to_string),
            dirs,
            proof: "named by the runtime".into(),
        }
    }
}

/// A non-empty single path component (no `/`, not `.` or `..`).
pub fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

// ----------------------------------------------------------------------------------------
// Paths
// ----------------------------------------------------------------------------------------

/// Lexically normalised absolute path (`//a/./b/../c` → `/a/c`), so a prefix test cannot be
/// escaped with `..`.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `path` is `prefix` or below it, by whole components.
pub fn path_under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A path as the runtime reads it, without the host: relative to the bundle, cleaned.
fn lexical(path: &str, bundle: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!("{bundle}/{path}"))
    }
}

// ----------------------------------------------------------------------------------------
// Namespaces
// ----------------------------------------------------------------------------------------

/// Whether a path spells the host's namespace as a runtime writes it: `/proc/1/…`,
/// `/proc/self/…`, `/proc/thread-self/…` after normalisation. For paths the runtime itself
/// wrote (NRI's view of a CRI container); an author-written path is judged by
/// [`namespace_is_host`].
pub fn spelled_host_namespace(path: &str) -> bool {
    let p = clean_path(path);
    ["/proc/1/", "/proc/self/", "/proc/thread-self/"]
        .iter()
        .any(|h| p.starts_with(h))
}

/// The namespace facts a host would give for `config`, each path judged by its spelling
/// ([`spelled_host_namespace`]): for tests whose subject is not the namespace rules.
#[cfg(test)]
pub(crate) fn spelled_namespace_facts(config: &OciConfig) -> Vec<NamespaceFact> {
    config
        .linux
        .iter()
        .flat_map(|l| &l.namespaces)
        .filter_map(|n| {
            let path = n.path.clone()?;
            Some(NamespaceFact {
                kind: n.kind.clone(),
                host: Some(spelled_host_namespace(&path)),
                path,
                error: None,
            })
        })
        .collect()
}

/// Why the container's `kind` namespace is the host's, or `None` when it has its own or
/// joins another that is not the host's.
///
/// * No entry of that type: the runtime does not create one, the container shares the
///   runtime's (the host's): `hostNetwork`, `hostPID`, `hostIPC` as runc, containerd and
///   CRI-O encode them.
/// * An entry with a `path`: with host facts, the namespace the path names is compared by
///   device and inode with the host's (`/proc/1/ns/<kind>` and the hook's own); a path the
///   hook could not open is not shown to be another namespace, so it counts as the host's
///   (fail closed). Without facts, any path under `/proc` (after normalisation:
///   `//proc/self/ns/net`, `/proc/./self/ns/net`, `/proc/2/ns/net`, `/proc/1/task/1/ns/ipc`)
///   is a process's namespace, which may be the host's, and counts as the host's; so does a
///   path with `..` (after a symlink, `/var/run` → `/run`, it leads elsewhere than spelled).
pub fn namespace_is_host(
    linux: Option<&OciLinux>,
    kind: &str,
    host: Option<&HostFacts>,
) -> Option<String> {
    let entries: Vec<_> = linux
        .into_iter()
        .flat_map(|l| &l.namespaces)
        .filter(|n| n.kind == kind)
        .collect();
    let entry = match entries.as_slice() {
        [] => return Some(format!("`{kind}` is not in `linux.namespaces`")),
        [one] => *one,
        _ => {
            return Some(format!(
                "`linux.namespaces` lists `{kind}` {} times; runtimes disagree on which applies",
                entries.len()
            ));
        }
    };
    let path = match entry.path.as_deref() {
        None | Some("") => return None,
        Some(p) => p,
    };
    let fact = host.and_then(|h| {
        h.namespaces
            .iter()
            .find(|n| n.kind == kind && n.path == path)
    });
    match fact {
        Some(NamespaceFact {
            host: Some(true), ..
        }) => Some(format!(
            "the `{kind}` namespace joins `{path}`, which is the host's (same device and inode)"
        )),
        Some(NamespaceFact {
            host: Some(false), ..
        }) => None,
        Some(NamespaceFact { error, .. }) => Some(format!(
            "the `{kind}` namespace joins `{path}`, which the hook could not compare with the host's ({}); fail closed",
            error.as_deref().unwrap_or("unknown")
        )),
        // `..` after a symlink (`/var/run` → `/run`) leads elsewhere than the lexical
        // reading: a path with `..` cannot be judged by spelling.
        None if !path.starts_with('/')
            || path.split('/').any(|c| c == "..")
            || clean_path(path).starts_with("/proc/") =>
        {
            Some(format!(
                "the `{kind}` namespace joins `{path}`, a process's namespace that, without host facts, may be the host's"
            ))
        }
        None => None,
    }
}

// ----------------------------------------------------------------------------------------
// Mounts and the root filesystem
// ----------------------------------------------------------------------------------------

/// Filesystem types that bring no host storage: each mount is a new instance (or, for
/// `cgroup`, the container's own view). `devtmpfs`, `bpf`, `debugfs`, `securityfs`,
/// `configfs`, `efivarfs`, `binfmt_misc` and the like are the host's and are not here.
pub const PSEUDO_FILESYSTEMS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "ramfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// The devices every runtime provides (runtime-spec `config-linux.md`, "Default Devices");
/// rootless runtimes bind-mount them from the host's `/dev`.
const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// What the checks know about where the container's storage may come from.
#[derive(Debug)]
pub struct Storage<'a> {
    bundle: String,
    /// `<store>/<driver>-containers/<id>/userdata`, the bundle's tail in a containers/storage
    /// layout (podman, CRI-O): `[driver-containers, id, "userdata"]`.
    own_userdata: Option<[String; 3]>,
    roots: Vec<String>,
    dirs: Vec<String>,
    host: Option<&'a HostFacts>,
}

impl<'a> Storage<'a> {
    /// From the state's bundle, the host facts, and a pod uid a host (NRI) gave.
    pub fn new(bundle: &str, host: Option<&'a HostFacts>, host_pod_uid: Option<&str>) -> Self {
        let bundle = host
            .and_then(|h| h.bundle.clone())
            .unwrap_or_else(|| clean_path(bundle));
        let parts: Vec<&str> = bundle.split('/').filter(|c| !c.is_empty()).collect();
        let mut own_userdata = None;
        let mut roots: Vec<String> = host.map(|h| h.storage_roots.clone()).unwrap_or_default();
        if let [prefix @ .., store, id, "userdata"] = parts.as_slice()
            && store.ends_with("-containers")
            && store.len() > "-containers".len()
        {
            own_userdata = Some([store.to_string(), id.to_string(), "userdata".into()]);
            roots.push(format!("/{}", prefix.join("/")));
        }
        let mut dirs: Vec<String> = host
            .and_then(|h| h.sandbox.as_ref())
            .map(|s| s.dirs.clone())
            .unwrap_or_default();
        if let Some(uid) = host_pod_uid.filter(|u| safe_component(u)) {
            dirs.push(format!("/var/lib/kubelet/pods/{uid}"));
        }
        Storage {
            bundle,
            own_userdata,
            roots: roots.into_iter().map(|r| clean_path(&r)).collect(),
            dirs: dirs.into_iter().map(|d| clean_path(&d)).collect(),
            host,
        }
    }

    /// Whether a resolved source is the runtime's or kubelet's own for this container: its
    /// own userdata directory (podman, CRI-O: the bundle's), a named volume of a container
    /// store (`<root>/volumes/<name>/_data`), or a directory of its proven pod sandbox.
    fn managed(&self, source: &str) -> bool {
        if let Some(tail) = &self.own_userdata {
            let parts: Vec<&str> = source.split('/').filter(|c| !c.is_empty()).collect();
            if parts.windows(3).any(|w| w == tail.as_slice()) {
                return true;
            }
        }
        for root in &self.roots {
            if let Some(rest) = source
                .strip_prefix(root.as_str())
                .and_then(|r| r.strip_prefix("/volumes/"))
            {
                let mut it = rest.split('/');
                if it.next().is_some_and(safe_component) && it.next() == Some("_data") {
                    return true;
                }
            }
        }
        self.dirs.iter().any(|d| path_under(source, d))
    }

    /// Whether a root filesystem path is the runtime's: inside the bundle (containerd's
    /// `rootfs`) or a container store (`<graphroot>/overlay/<layer>/merged`).
    fn managed_root(&self, root: &str) -> bool {
        (self.bundle != "/" && path_under(root, &self.bundle))
            || self.roots.iter().any(|r| r != "/" && path_under(root, r))
    }

    fn source(&self, index: usize, written: &str) -> Result<String, String> {
        let fact = self
            .host
            .and_then(|h| h.mounts.iter().find(|m| m.index == index));
        match fact {
            Some(m) => resolved(&m.source),
            None => Ok(lexical(written, &self.bundle)),
        }
    }
}

fn resolved(f: &PathFact) -> Result<String, String> {
    match (&f.resolved, &f.error) {
        (Some(r), _) => Ok(clean_path(r)),
        (None, e) => Err(e.clone().unwrap_or_else(|| "not resolved".into())),
    }
}

/// A bind mount, by `type` or by options (as runc and crun decide it).
pub fn is_bind(m: &OciMount) -> bool {
    m.kind
        .as_deref()
        .is_some_and(|k| k == "bind" || k == "rbind")
        || m.options.iter().any(|o| o == "bind" || o == "rbind")
}

/// Every piece of host storage the container gets that `allowed` does not allow, described
/// for a message: bind mounts (sources resolved as the runtime does), mounts of any
/// filesystem that is not a pseudo-filesystem (a block device, an NFS export), overlay
/// directories, and a root filesystem outside the runtime's storage.
pub fn host_paths(allowed: &[HostPath], config: &OciConfig, storage: &Storage<'_>) -> Vec<String> {
    let mut bad = Vec::new();
    let judge = |what: String, path: &str, ro: bool| -> Option<String> {
        let fit = allowed.iter().find(|h| path_under(path, &h.path_prefix));
        match fit {
            None => Some(what),
            Some(h) if h.read_only && !ro => Some(format!(
                "{what} (writable; `{}` must be mounted read-only)",
                h.path_prefix
            )),
            Some(_) => None,
        }
    };
    for (i, m) in config.mounts.iter().enumerate() {
        let ro = m.options.iter().any(|o| o == "ro");
        let dest = &m.destination;
        let kind = m.kind.as_deref().unwrap_or("");
        if is_bind(m) {
            let written = m.source.as_deref().unwrap_or("");
            match storage.source(i, written) {
                Err(e) => bad.push(format!(
                    "`{written}` at `{dest}` (cannot be resolved on the host: {e})"
                )),
                Ok(src) => {
                    if storage.managed(&src)
                        || (DEFAULT_DEVICES.contains(&src.as_str()) && clean_path(dest) == src)
                    {
                        continue;
                    }
                    let what = if src == clean_path(written) {
                        format!("`{src}` at `{dest}`")
                    } else {
                        format!("`{src}` (written `{written}`) at `{dest}`")
                    };
                    bad.extend(judge(what, &src, ro));
                }
            }
        } else if PSEUDO_FILESYSTEMS.contains(&kind) {
            continue;
        } else if kind == "overlay" {
            for (key, dirs) in overlay_dirs(&m.options) {
                for d in dirs {
                    let p = lexical(d, &storage.bundle);
                    if storage.managed(&p) || storage.managed_root(&p) {
                        continue;
                    }
                    bad.extend(judge(
                        format!("`{p}` (overlay `{key}`) at `{dest}`"),
                        &p,
                        key == "lowerdir",
                    ));
                }
            }
        } else {
            let src = m.source.as_deref().unwrap_or("");
            let p = lexical(src, &storage.bundle);
            let kind = if kind.is_empty() { "a mount" } else { kind };
            bad.extend(judge(format!("`{kind}` of `{src}` at `{dest}`"), &p, ro));
        }
    }
    // An empty `root.path` is the bundle itself (runc joins it to the bundle), the runtime's.
    if let Some(root) = config.root.as_ref().filter(|r| !r.path.is_empty()) {
        let ro = root.readonly;
        let got = match storage.host.and_then(|h| h.root.as_ref()) {
            Some(f) => resolved(f),
            None => Ok(lexical(&root.path, &storage.bundle)),
        };
        match got {
            Err(e) => bad.push(format!(
                "the root filesystem `{}` (`root.path`, cannot be resolved on the host: {e})",
                root.path
            )),
            Ok(p) if storage.managed_root(&p) => {}
            Ok(p) => bad.extend(judge(
                format!("`{p}` as the root filesystem (`root.path`)"),
                &p,
                ro,
            )),
        }
    }
    bad
}

/// `lowerdir=a:b`, `upperdir=c`, `workdir=d` of an overlay mount's options.
fn overlay_dirs(options: &[String]) -> Vec<(&'static str, Vec<&str>)> {
    let mut out = Vec::new();
    for o in options {
        for key in ["lowerdir", "upperdir", "workdir"] {
            if let Some(v) = o.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                out.push((key, v.split(':').filter(|d| !d.is_empty()).collect()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
