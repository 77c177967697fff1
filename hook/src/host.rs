//! What only the host can establish about a container start, gathered at hook time and
//! handed to the engine with the OCI documents ([`HostFacts`]):
//!
//! - **namespaces by identity**: each `linux.namespaces` path is opened (relative paths
//!   from the bundle, as the runtime's working directory is the bundle) and its device and
//!   inode compared with the host's (`/proc/1/ns/<kind>`) and the hook's own (the runtime's
//!   namespace, which a container without that entry shares). A path that cannot be opened
//!   is reported with the error and the engine counts it as the host's (fail closed).
//! - **mount sources and the root**: bind sources and `root.path` resolved as the runtime
//!   resolves them: relative to the bundle, symlinks followed on the host.
//! - **the container stores' roots**: containers/storage `graphroot` and `runroot` from
//!   `storage.conf` (podman, CRI-O), for named volumes and image layers.
//! - **the pod sandbox**: an id named in the annotations is only a candidate; it is proven
//!   when the container shares a namespace (IPC, UTS, network or PID, not the host's) with
//!   that sandbox's process, found in the sandbox's own bundle (containerd's `init.pid`,
//!   CRI-O's `pidfile`). Its pod uid comes from the sandbox's own `config.json`. Only then
//!   are the sandbox's files (hosts, hostname, resolv.conf, shm) and the pod's kubelet
//!   directory the runtime's.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use palisade_engine::container::host::{
    HostFacts, MountFact, NamespaceFact, PathFact, SandboxFact, is_bind, safe_component,
};
use palisade_engine::container::read::read_config;
use palisade_engine::container::{OciConfig, annotations as a};
use palisade_engine::provenance::{Attestation, MAX_ENVELOPE};

/// Where containerd keeps its persistent state unless `/etc/containerd/config.toml` says
/// otherwise (containerd's documented default `root`).
const CONTAINERD_ROOT: &str = "/var/lib/containerd";
/// Kubelet's default `--root-dir`.
const KUBELET_ROOT: &str = "/var/lib/kubelet";

/// The namespace file under `/proc/<pid>/ns/` for an OCI namespace type.
fn ns_file(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "network" => "net",
        "mount" => "mnt",
        "pid" => "pid",
        "ipc" => "ipc",
        "uts" => "uts",
        "user" => "user",
        "cgroup" => "cgroup",
        "time" => "time",
        _ => return None,
    })
}

fn identity(path: &Path) -> Result<(u64, u64), String> {
    fs::metadata(path)
        .map(|m| (m.dev(), m.ino()))
        .map_err(|e| e.to_string())
}

/// The host's namespace of a kind: pid 1's and the hook's own (the runtime's).
fn host_identities(kind: &str) -> Vec<(u64, u64)> {
    let Some(file) = ns_file(kind) else {
        return Vec::new();
    };
    ["/proc/1/ns", "/proc/self/ns"]
        .iter()
        .filter_map(|d| identity(&Path::new(d).join(file)).ok())
        .collect()
}

fn from_bundle(bundle: &Path, p: &str) -> PathBuf {
    if p.starts_with('/') {
        PathBuf::from(p)
    } else {
        bundle.join(p)
    }
}

fn resolve(bundle: &Path, p: &str) -> PathFact {
    match fs::canonicalize(from_bundle(bundle, p)) {
        Ok(r) => PathFact {
            path: p.to_string(),
            resolved: Some(r.display().to_string()),
            error: None,
        },
        Err(e) => PathFact {
            path: p.to_string(),
            resolved: None,
            error: Some(e.to_string()),
        },
    }
}

/// The provenance envelopes in `dir` (`*.json` regular files, by name) for
/// `images.provenance`. Each is read up to one byte past the engine's bound, which then
/// refuses it by size; a directory that cannot be read fails the start (closed).
pub fn attestations(dir: &Path) -> Result<Vec<Attestation>, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| {
        format!(
            "cannot read the attestations directory `{}`: {e}",
            dir.display()
        )
    };
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(cannot)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for path in names {
        let mut text = String::new();
        fs::File::open(&path)
            .and_then(|f| f.take(MAX_ENVELOPE as u64 + 1).read_to_string(&mut text))
            .map_err(|e| format!("cannot read attestation `{}`: {e}", path.display()))?;
        out.push(Attestation {
            name: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            envelope: text,
        });
    }
    Ok(out)
}

/// Gathers the facts for a container whose bundle is `bundle`, from its `config.json` text
/// and the state's annotations. A `config.json` the engine refuses yields no facts (the
/// engine refuses it again, with the reason).
pub fn gather(
    bundle: &Path,
    config_json: &str,
    state_annotations: &[(String, String)],
) -> HostFacts {
    let Ok(config) = read_config(config_json) else {
        return HostFacts::default();
    };
    let bundle_real = fs::canonicalize(bundle).ok();
    let base = bundle_real.as_deref().unwrap_or(bundle);
    let mut facts = HostFacts {
        bundle: bundle_real.as_ref().map(|b| b.display().to_string()),
        ..HostFacts::default()
    };
    for ns in config.linux.iter().flat_map(|l| &l.namespaces) {
        let Some(path) = ns.path.as_deref().filter(|p| !p.is_empty()) else {
            continue;
        };
        let hosts = host_identities(&ns.kind);
        let (host, error) = match identity(&from_bundle(base, path)) {
            Err(e) => (None, Some(e)),
            Ok(_) if hosts.is_empty() => (
                None,
                Some(format!("the host's `{}` namespace cannot be read", ns.kind)),
            ),
            Ok(id) => (Some(hosts.contains(&id)), None),
        };
        facts.namespaces.push(NamespaceFact {
            kind: ns.kind.clone(),
            path: path.to_string(),
            host,
            error,
        });
    }
    for (index, m) in config.mounts.iter().enumerate() {
        if is_bind(m) {
            let source = m.source.as_deref().unwrap_or("");
            facts.mounts.push(MountFact {
                index,
                source: resolve(base, source),
            });
        }
    }
    if let Some(root) = config.root.as_ref().filter(|r| !r.path.is_empty()) {
        facts.root = Some(resolve(base, &root.path));
    }
    facts.storage_roots = storage_roots();
    facts.sandbox = prove_sandbox(base, &config, state_annotations, &facts.storage_roots);
    facts
}

/// containers/storage's `graphroot` and `runroot` ([storage] table of `storage.conf`;
/// `/etc/containers` overrides `/usr/share/containers`; as root the documented defaults
/// `/var/lib/containers/storage` and `/run/containers/storage` when unset).
pub fn storage_roots() -> Vec<String> {
    let text = [
        "/etc/containers/storage.conf",
        "/usr/share/containers/storage.conf",
    ]
    .iter()
    .find_map(|p| fs::read_to_string(p).ok())
    .unwrap_or_default();
    let mut graph = toml_string(&text, "storage", "graphroot");
    let mut run = toml_string(&text, "storage", "runroot");
    if rustix::process::geteuid().is_root() {
        graph.get_or_insert_with(|| "/var/lib/containers/storage".into());
        run.get_or_insert_with(|| "/run/containers/storage".into());
    }
    graph
        .into_iter()
        .chain(run)
        .filter(|p| p.starts_with('/'))
        .collect()
}

/// `key = "value"` in `[table]` (or at the top level for an empty `table`) of a simple TOML
/// file: enough for `storage.conf` and containerd's `config.toml`.
pub fn toml_string(text: &str, table: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('[') {
            current = t.trim_end_matches(']').trim().to_string();
            continue;
        }
        if current != table {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            let v = v.trim();
            let v = v.split('#').next().unwrap_or(v).trim();
            return Some(v.trim_matches('"').trim_matches('\'').to_string());
        }
    }
    None
}

/// The sandbox's bundle and the file its runtime keeps the sandbox process's pid in, for a
/// candidate id, when the container's own bundle has a known layout.
fn sandbox_bundle(bundle: &Path, id: &str) -> Option<(PathBuf, &'static str, Layout)> {
    let parent = bundle.parent()?;
    if parent.parent()?.file_name()? == "io.containerd.runtime.v2.task" {
        return Some((parent.join(id), "init.pid", Layout::Containerd));
    }
    if bundle.file_name()? == "userdata" {
        let store = parent.parent()?;
        if store
            .file_name()?
            .to_string_lossy()
            .ends_with("-containers")
        {
            return Some((store.join(id).join("userdata"), "pidfile", Layout::Storage));
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Containerd,
    Storage,
}

fn prove_sandbox(
    bundle: &Path,
    config: &OciConfig,
    state_annotations: &[(String, String)],
    storage_roots: &[String],
) -> Option<SandboxFact> {
    let mut candidates: Vec<&str> = Vec::new();
    for key in [a::CRI_SANDBOX_ID, a::CRIO_SANDBOX_ID] {
        let from_state = state_annotations
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str());
        for v in config
            .annotations
            .get(key)
            .map(String::as_str)
            .into_iter()
            .chain(from_state)
        {
            if safe_component(v) && !candidates.contains(&v) {
                candidates.push(v);
            }
        }
    }
    for id in candidates {
        let Some((sb, pid_file, layout)) = sandbox_bundle(bundle, id) else {
            continue;
        };
        if sb == bundle {
            continue;
        }
        let Some(pid) = fs::read_to_string(sb.join(pid_file))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|p| *p > 1)
        else {
            continue;
        };
        let Some(shared) = shared_namespace(bundle, config, pid) else {
            continue;
        };
        let sb_config = fs::read_to_string(sb.join("config.json"))
            .ok()
            .and_then(|t| read_config(&t).ok())
            .unwrap_or_default();
        let ann = |k: &str| {
            sb_config
                .annotations
                .get(k)
                .cloned()
                .filter(|v| !v.is_empty())
        };
        let is_sandbox = ann(a::CRI_CONTAINER_TYPE).or_else(|| ann(a::CRIO_CONTAINER_TYPE));
        if is_sandbox.as_deref() != Some("sandbox") {
            continue;
        }
        let pod_uid = ann(a::CRI_SANDBOX_UID).or_else(|| ann(a::POD_UID));
        let mut dirs = Vec::new();
        match layout {
            Layout::Containerd => {
                let task = bundle.parent().and_then(Path::parent);
                let state = task.and_then(Path::parent);
                let root = fs::read_to_string("/etc/containerd/config.toml")
                    .ok()
                    .and_then(|t| toml_string(&t, "", "root"))
                    .unwrap_or_else(|| CONTAINERD_ROOT.into());
                for base in state
                    .map(Path::to_path_buf)
                    .into_iter()
                    .chain([PathBuf::from(root)])
                {
                    dirs.push(
                        base.join("io.containerd.grpc.v1.cri/sandboxes")
                            .join(id)
                            .display()
                            .to_string(),
                    );
                }
            }
            Layout::Storage => {
                dirs.push(sb.display().to_string());
                if let Some(store) = sb.parent().and_then(Path::parent).and_then(Path::file_name) {
                    for root in storage_roots {
                        dirs.push(
                            Path::new(root)
                                .join(store)
                                .join(id)
                                .join("userdata")
                                .display()
                                .to_string(),
                        );
                    }
                }
            }
        }
        if let Some(uid) = pod_uid.as_deref().filter(|u| safe_component(u)) {
            dirs.push(format!("{KUBELET_ROOT}/pods/{uid}"));
        }
        return Some(SandboxFact {
            id: id.to_string(),
            pod_uid,
            dirs,
            proof: format!(
                "the container joins the `{shared}` namespace of the sandbox's process (pid {pid})"
            ),
        });
    }
    None
}

/// A namespace (not the host's) that the container joins by path and that the process
/// `pid` is in.
fn shared_namespace(bundle: &Path, config: &OciConfig, pid: u32) -> Option<String> {
    for ns in config.linux.iter().flat_map(|l| &l.namespaces) {
        if !["ipc", "uts", "network", "pid"].contains(&ns.kind.as_str()) {
            continue;
        }
        let (Some(path), Some(file)) = (ns.path.as_deref(), ns_file(&ns.kind)) else {
            continue;
        };
        let Ok(ours) = identity(&from_bundle(bundle, path)) else {
            continue;
        };
        let theirs = identity(
            &Path::new("/proc")
                .join(pid.to_string())
                .join("ns")
                .join(file),
        );
        if theirs == Ok(ours) && !host_identities(&ns.kind).contains(&ours) {
            return Some(ns.kind.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_values_are_read_from_their_table() {
        let text = "root = \"/data/containerd\"\n[storage]\ndriver = \"overlay\"\ngraphroot = \"/srv/graph\" # comment\nrunroot='/run/x'\n[storage.options]\ngraphroot = \"/no\"\n";
        assert_eq!(
            toml_string(text, "", "root").as_deref(),
            Some("/data/containerd")
        );
        assert_eq!(
            toml_string(text, "storage", "graphroot").as_deref(),
            Some("/srv/graph")
        );
        assert_eq!(
            toml_string(text, "storage", "runroot").as_deref(),
            Some("/run/x")
        );
        assert_eq!(toml_string(text, "storage", "missing"), None);
    }

    #[test]
    fn namespace_paths_are_compared_by_identity() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = r#"{"linux":{"namespaces":[
            {"type":"network","path":"//proc/self/ns/net"},
            {"type":"ipc","path":"/proc/./self/ns/ipc"},
            {"type":"uts","path":"/proc/999999999/ns/uts"},
            {"type":"pid","path":"/proc/self/task/../ns/pid"}]}}"#;
        let facts = gather(dir.path(), config, &[]);
        let got: Vec<(&str, Option<bool>, bool)> = facts
            .namespaces
            .iter()
            .map(|n| (n.kind.as_str(), n.host, n.error.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("network", Some(true), false),
                ("ipc", Some(true), false),
                ("uts", None, true),
                ("pid", Some(true), false),
            ]
        );
        Ok(())
    }

    #[test]
    fn bind_sources_and_the_root_resolve_from_the_bundle_through_symlinks() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let b = dir.path();
        std::os::unix::fs::symlink("/", b.join("hostroot")).map_err(|e| e.to_string())?;
        fs::create_dir(b.join("rootfs")).map_err(|e| e.to_string())?;
        let config = r#"{"root":{"path":"rootfs"},"mounts":[
            {"destination":"/proc","type":"proc","source":"proc"},
            {"destination":"/h","type":"bind","source":"hostroot","options":["rbind"]},
            {"destination":"/g","source":"/nonexistent/x","options":["bind"]}]}"#;
        let facts = gather(b, config, &[]);
        let real = fs::canonicalize(b).map_err(|e| e.to_string())?;
        assert_eq!(facts.bundle, Some(real.display().to_string()));
        let mounts: Vec<(usize, Option<&str>)> = facts
            .mounts
            .iter()
            .map(|m| (m.index, m.source.resolved.as_deref()))
            .collect();
        assert_eq!(mounts, [(1, Some("/")), (2, None)]);
        assert_eq!(
            facts.root.and_then(|r| r.resolved),
            Some(real.join("rootfs").display().to_string())
        );
        Ok(())
    }
}
