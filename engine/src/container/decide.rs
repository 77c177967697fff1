//! The decision: every policy whose selector matches the container is checked, every
//! violated control reported.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::checks;
use super::host::{HostFacts, Storage, host_paths, namespace_is_host};
use super::image::ImageRef;
use super::*;
use crate::error::ContainerError;
use crate::inventory::Inventory;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDecision {
    /// No violation.
    pub allowed: bool,
    /// Every violated control of every selected policy, in policy order then control order.
    pub violations: Vec<Violation>,
    /// The selected policies (`ns/name`), in input order.
    pub policies: Vec<String>,
    /// Who and what was decided on.
    pub subject: Subject,
    /// Why nothing was checked, when nothing was (`sandbox container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The container as the decision saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// The OCI container id.
    pub id: String,
    /// The pod's namespace, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The container's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The service account, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The pod labels used for selection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the labels came from: `pod`, `cri-o`, `inventory`, `annotation`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_from: Option<String>,
    /// The image reference as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl fmt::Display for ContainerDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        write!(f, "container `{}` {verdict}", self.subject.id)?;
        if let Some(s) = &self.skipped {
            write!(f, " ({s})")?;
        }
        for v in &self.violations {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

/// What the request says about the container, resolved once.
struct Facts<'a> {
    annotations: BTreeMap<&'a str, &'a str>,
    subject: Subject,
    image_digest: Option<String>,
    /// Where the container's storage may legitimately come from (host facts, bundle).
    storage: Storage<'a>,
    /// The host's facts, when it gave them.
    host: Option<&'a HostFacts>,
}

impl Facts<'_> {
    fn get(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|k| self.annotations.get(k))
            .map(|v| (*v).to_string())
            .filter(|v| !v.is_empty())
    }
}

fn labels_json(key: &str, text: &str) -> Result<BTreeMap<String, String>, ContainerError> {
    serde_json::from_str(text).map_err(|e| ContainerError::BadLabels {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn facts<'a>(
    inventory: &Inventory,
    req: &'a ContainerRequest,
) -> Result<Facts<'a>, ContainerError> {
    use annotations as a;
    let mut all: BTreeMap<&str, &str> = BTreeMap::new();
    for map in [
        &req.config.annotations,
        &req.state.annotations,
        &req.annotations,
    ] {
        for (k, v) in map {
            all.insert(k.as_str(), v.as_str());
        }
    }
    let mut f = Facts {
        annotations: all,
        subject: Subject {
            id: req.state.id.clone(),
            ..Subject::default()
        },
        image_digest: None,
        // Exemptions come from the host (its facts, NRI's pod uid) and the bundle the
        // runtime created, never from annotations or the container id.
        storage: Storage::new(
            &req.state.bundle,
            req.host.as_ref(),
            req.pod.as_ref().and_then(|p| p.uid.as_deref()),
        ),
        host: req.host.as_ref(),
    };
    let pod = req.pod.clone().unwrap_or_default();
    f.subject.namespace = pod
        .namespace
        .clone()
        .or_else(|| f.get(&[a::CRI_SANDBOX_NAMESPACE, a::POD_NAMESPACE]));
    f.subject.pod = pod
        .name
        .clone()
        .or_else(|| f.get(&[a::CRI_SANDBOX_NAME, a::POD_NAME]));
    f.subject.container = f.get(&[a::CRI_CONTAINER_NAME, a::CONTAINER_NAME]);
    let image = req.image.clone().unwrap_or_default();
    f.subject.image = image
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| f.get(&[a::CRI_IMAGE_NAME, a::CRIO_IMAGE_NAME]));
    f.image_digest = image.digest.clone();

    let workload = match (&f.subject.namespace, &f.subject.pod) {
        (Some(ns), Some(name)) => inventory.workload(ns, name),
        _ => None,
    };
    let (labels, from) = if let Some(l) = &pod.labels {
        (Some(l.clone()), "pod")
    } else if let Some(text) = f.get(&[a::CRIO_LABELS]) {
        (Some(labels_json(a::CRIO_LABELS, &text)?), "cri-o")
    } else if let Some(w) = workload {
        (Some(w.labels.clone()), "inventory")
    } else if let Some(text) = f.get(&[a::PALISADE_LABELS]) {
        (Some(labels_json(a::PALISADE_LABELS, &text)?), "annotation")
    } else {
        (None, "")
    };
    if let Some(l) = labels {
        f.subject.labels = l;
        f.subject.labels_from = Some(from.to_string());
    }
    f.subject.service_account = pod
        .service_account
        .clone()
        .or_else(|| workload.map(|w| w.service_account.clone()))
        .or_else(|| f.get(&[a::PALISADE_SERVICE_ACCOUNT]));
    Ok(f)
}

/// Decides whether a container may start: every policy whose selector matches is checked,
/// every violated control reported. `Err` when the request cannot be read; hosts deny then.
pub fn decide_container(
    policies: &[ContainerPolicy],
    inventory: &Inventory,
    req: &ContainerRequest,
) -> Result<ContainerDecision, ContainerError> {
    if req.state.id.is_empty() {
        return Err(ContainerError::EmptyId);
    }
    let f = facts(inventory, req)?;
    let mut decision = ContainerDecision {
        allowed: true,
        subject: f.subject.clone(),
        ..ContainerDecision::default()
    };
    // A sandbox (pause) container is checked like any other: the host namespaces, sysctls
    // and privileges it holds are the pod's (PSS judges `hostNetwork` on the pod). Only its
    // image is the runtime's configuration, not the workload's: image rules are skipped for
    // a container that says it is a sandbox and runs the pause command, nothing else.
    let kind = f.get(&[
        annotations::CRI_CONTAINER_TYPE,
        annotations::CRIO_CONTAINER_TYPE,
    ]);
    let pause = req
        .config
        .process
        .as_ref()
        .is_some_and(|p| p.args == ["/pause"]);
    let skip_images = kind.as_deref() == Some("sandbox") && pause;
    if skip_images {
        decision.skipped = Some(
            "sandbox container: image rules not checked (the pause image is the runtime's)".into(),
        );
    }
    // Parsed once, reported per policy.
    let image = f.subject.image.as_deref().map(ImageRef::parse);
    for p in policies.iter().filter(|p| selects(&p.selector, &f.subject)) {
        let id = p.id();
        decision.policies.push(id.clone());
        let mut out = Report {
            policy: &id,
            violations: &mut decision.violations,
        };
        if !skip_images {
            check_images(&p.images, image.as_ref(), &f, &mut out);
        }
        check_privileges(&p.privileges, &req.config, &f, &req.state.id, &mut out);
    }
    decision.allowed = decision.violations.is_empty();
    Ok(decision)
}

fn selects(sel: &Selector, s: &Subject) -> bool {
    let ns_ok = sel.namespaces.is_empty()
        || s.namespace
            .as_ref()
            .is_some_and(|n| sel.namespaces.contains(n));
    ns_ok && sel.labels.matches(&s.labels)
}

fn check_images(
    rules: &ImageRules,
    image: Option<&Result<ImageRef, String>>,
    f: &Facts<'_>,
    out: &mut Report<'_>,
) {
    if rules.is_empty() {
        return;
    }
    let img = match image {
        None => {
            out.add(
                "image",
                format!(
                    "no image reference in the annotations (`{}` or `{}`); the image rules cannot be checked",
                    annotations::CRI_IMAGE_NAME,
                    annotations::CRIO_IMAGE_NAME
                ),
            );
            return;
        }
        Some(Err(e)) => {
            out.add("image", format!("{e}; the image rules cannot be checked"));
            return;
        }
        Some(Ok(i)) => i,
    };
    if let Some(allowed) = &rules.allowed_registries
        && !allowed.iter().any(|p| p.matches(&img.registry))
    {
        let texts: Vec<&str> = allowed.iter().map(|p| p.text.as_str()).collect();
        out.add(
            "image.registry",
            format!(
                "image `{img}` is from registry `{}`; allowed registries: {}",
                img.registry,
                ticks(&texts)
            ),
        );
    }
    if let Some(allowed) = &rules.allowed_repositories {
        let name = img.name();
        if !allowed.iter().any(|p| p.matches(&name)) {
            let texts: Vec<&str> = allowed.iter().map(|p| p.text.as_str()).collect();
            out.add(
                "image.repository",
                format!(
                    "image `{img}` is from repository `{name}`; allowed repositories: {}",
                    ticks(&texts)
                ),
            );
        }
    }
    if rules.require_digest && img.digest.is_none() {
        out.add(
            "image.digest",
            format!(
                "image `{img}` is not pinned by digest; write it as `{}@sha256:…`",
                img.name()
            ),
        );
    }
    if img.digest.is_none()
        && let Some(tag) = &img.tag
        && rules.denied_tags.contains(tag)
    {
        let how = if img.implicit_tag {
            " (implicit: the reference has no tag)"
        } else {
            ""
        };
        out.add(
            "image.deniedTag",
            format!(
                "image `{img}` uses tag `{tag}`{how}; denied tags: {}",
                ticks(&rules.denied_tags)
            ),
        );
    }
    let digest = img.digest.clone().or_else(|| f.image_digest.clone());
    if let Some(rule) = &rules.provenance {
        let offered = f.host.map_or(&[][..], |h| h.attestations.as_slice());
        if let Some(message) =
            crate::provenance::check_image(rule, &img.to_string(), digest.as_deref(), offered)
        {
            out.add("image.provenance", message);
        }
    }
    for entry in &rules.digests_by_identity {
        if f.subject.namespace.as_deref() != Some(entry.namespace.as_str()) {
            continue;
        }
        let applies = match &entry.who {
            IdentityKey::ServiceAccount(sa) => match &f.subject.service_account {
                Some(have) => have == sa,
                None => {
                    out.add(
                        "image.digestByIdentity",
                        format!(
                            "the service account of the container is unknown, so it may be {entry}, which may only run digests {}; give it through the inventory or `{}`",
                            ticks(&entry.digests),
                            annotations::PALISADE_SERVICE_ACCOUNT
                        ),
                    );
                    continue;
                }
            },
            IdentityKey::Labels(l) => l.iter().all(|(k, v)| f.subject.labels.get(k) == Some(v)),
        };
        if !applies {
            continue;
        }
        match &digest {
            Some(d) if entry.digests.contains(d) => {}
            Some(d) => out.add(
                "image.digestByIdentity",
                format!(
                    "image `{img}` has digest `{d}`; {entry} may only run digests {}",
                    ticks(&entry.digests)
                ),
            ),
            None => out.add(
                "image.digestByIdentity",
                format!(
                    "image `{img}` has no digest; {entry} may only run digests {}",
                    ticks(&entry.digests)
                ),
            ),
        }
    }
}

fn has_namespace(linux: Option<&OciLinux>, kind: &str) -> bool {
    linux.is_some_and(|l| l.namespaces.iter().any(|n| n.kind == kind))
}

fn check_privileges(
    p: &Privileges,
    config: &OciConfig,
    f: &Facts<'_>,
    _container_id: &str,
    out: &mut Report<'_>,
) {
    let process = config.process.as_ref();
    let linux = config.linux.as_ref();
    let level = p.level.as_str();
    let own_userns =
        has_namespace(linux, "user") && namespace_is_host(linux, "user", f.host).is_none();

    if let Some(allowed) = &p.allowed_capabilities {
        let mut granted: Vec<&str> = Vec::new();
        if let Some(c) = process.and_then(|pr| pr.capabilities.as_ref()) {
            for set in [
                &c.bounding,
                &c.effective,
                &c.permitted,
                &c.inheritable,
                &c.ambient,
            ] {
                for cap in set {
                    if !allowed.contains(&cap_name(cap)) && !granted.contains(&cap.as_str()) {
                        granted.push(cap);
                    }
                }
            }
        }
        if !granted.is_empty() {
            let allowed_caps: Vec<String> = allowed.iter().map(|c| format!("CAP_{c}")).collect();
            out.add(
                "capabilities",
                format!(
                    "the container holds {} (in `process.capabilities`); allowed (level `{level}` or `allowedCapabilities`): {}",
                    ticks(&granted),
                    ticks(&allowed_caps)
                ),
            );
        }
    }
    for (allowed, kind, control) in [
        (p.host_network, "network", "hostNetwork"),
        (p.host_pid, "pid", "hostPID"),
        (p.host_ipc, "ipc", "hostIPC"),
    ] {
        if !allowed && let Some(why) = namespace_is_host(linux, kind, f.host) {
            out.add(
                control,
                format!(
                    "the container shares the host's `{kind}` namespace ({why}); `{control}` is not allowed"
                ),
            );
        }
    }
    if let Some(allowed) = &p.allowed_host_paths {
        let bad = host_paths(allowed, config, &f.storage);
        if !bad.is_empty() {
            let prefixes: Vec<&str> = allowed.iter().map(|h| h.path_prefix.as_str()).collect();
            out.add(
                "hostPath",
                format!(
                    "the container mounts host paths {}; allowed host paths: {}",
                    bad.join(", "),
                    ticks(&prefixes)
                ),
            );
        }
    }
    if p.run_as_non_root {
        let uid = process.and_then(|pr| pr.user.as_ref()).map_or(0, |u| u.uid);
        let host_uid = if own_userns {
            linux
                .into_iter()
                .flat_map(|l| &l.uid_mappings)
                .find(|m| uid >= m.container_id && uid - m.container_id < m.size)
                .map(|m| m.host_id.saturating_add(uid - m.container_id))
        } else {
            Some(uid)
        };
        match host_uid {
            Some(0) => out.add(
                "runAsNonRoot",
                format!(
                    "the container runs as uid `{uid}`, root on the host (`process.user.uid`); uid 0 is not allowed"
                ),
            ),
            None => out.add(
                "runAsNonRoot",
                format!(
                    "the container's uid `{uid}` has no mapping in `linux.uidMappings`; uid 0 is not allowed"
                ),
            ),
            Some(_) => {}
        }
    }
    if p.no_new_privileges && process.and_then(|pr| pr.no_new_privileges) != Some(true) {
        out.add(
            "noNewPrivileges",
            "`process.noNewPrivileges` is not `true`; the container must not gain privileges (allowPrivilegeEscalation: false)".into(),
        );
    }
    checks::check_seccomp(p.seccomp_required, linux, out);
    if p.read_only_root_filesystem && !config.root.as_ref().is_some_and(|r| r.readonly) {
        out.add(
            "readOnlyRootFilesystem",
            "the root filesystem is writable (`root.readonly` is not `true`); a read-only root filesystem is required".into(),
        );
    }
    checks::check_sysctls(p.allowed_sysctls.as_ref(), linux, out);
    checks::check_apparmor(p.app_armor, process, out);
    checks::check_selinux(p, process, out);
    checks::check_proc_mount(p, linux, out);
    checks::check_kernel_mounts(p, config, out);
    checks::check_devices(p.allowed_devices.as_ref(), linux, out);
}
