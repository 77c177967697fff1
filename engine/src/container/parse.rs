//! Reading a ContainerPolicy's `spec`, with positions and field paths.

use super::image::valid_tag;
use super::*;
use crate::selector::parse_requirement;
use crate::yaml::{At, DResult, Fields, Str};

/// Reads a ContainerPolicy's `spec` (the caller has taken `apiVersion`, `kind`, `metadata`).
pub fn parse(
    mut top: Fields<'_>,
    name: String,
    namespace: String,
    origin: String,
) -> DResult<ContainerPolicy> {
    let spec = top.require("spec")?;
    top.finish(&["apiVersion", "kind", "metadata", "spec"])?;
    let at = spec.at();
    let mut f = at.fields()?;
    let selector = f.take("selector");
    let images = f.take("images");
    let privileges = f.take("privileges");
    f.finish(&["selector", "images", "privileges"])?;
    Ok(ContainerPolicy {
        name,
        namespace,
        selector: match &selector {
            Some(s) => parse_selector(s.at())?,
            None => Selector::default(),
        },
        images: match &images {
            Some(i) => parse_images(i.at())?,
            None => ImageRules::default(),
        },
        privileges: match &privileges {
            Some(p) => parse_privileges(p.at())?,
            None => Privileges::default(),
        },
        origin,
    })
}

fn parse_selector(at: At<'_>) -> DResult<Selector> {
    let mut f = at.fields()?;
    let namespaces = f.take("namespaces");
    let labels = f.take("matchLabels");
    let expressions = f.take("matchExpressions");
    f.finish(&["namespaces", "matchLabels", "matchExpressions"])?;
    let mut sel = Selector::default();
    if let Some(n) = &namespaces {
        for s in n.at().strings()? {
            if s.value.is_empty() {
                return Err(s.error("namespace must not be empty"));
            }
            sel.namespaces.push(s.value);
        }
    }
    if let Some(l) = &labels {
        sel.labels.match_labels = l.at().string_map()?;
    }
    if let Some(e) = &expressions {
        for (item, path) in e.at().items()? {
            sel.labels
                .match_expressions
                .push(parse_requirement(item.with_path(&path))?);
        }
    }
    Ok(sel)
}

fn parse_images(at: At<'_>) -> DResult<ImageRules> {
    let mut f = at.fields()?;
    let registries = f.take("allowedRegistries");
    let repositories = f.take("allowedRepositories");
    let digest = f.take("requireDigest");
    let tags = f.take("deniedTags");
    let by_identity = f.take("digestsByIdentity");
    let provenance = f.take("provenance");
    f.finish(&[
        "allowedRegistries",
        "allowedRepositories",
        "requireDigest",
        "deniedTags",
        "digestsByIdentity",
        "provenance",
    ])?;
    let mut rules = ImageRules::default();
    if let Some(r) = &registries {
        let mut list = Vec::new();
        for s in r.at().strings()? {
            check_glob(&s)?;
            if s.value.contains('/') {
                return Err(s
                    .error(format!("registry `{}` contains `/`", s.value))
                    .with_help("list repositories under `allowedRepositories`"));
            }
            list.push(Pattern::new(&s.value.to_ascii_lowercase()));
        }
        rules.allowed_registries = Some(list);
    }
    if let Some(r) = &repositories {
        let mut list = Vec::new();
        for s in r.at().strings()? {
            check_glob(&s)?;
            let last = s.value.rsplit('/').next().unwrap_or("");
            if !s.value.contains('/') {
                return Err(s
                    .error(format!("repository `{}` has no registry", s.value))
                    .with_help("write the registry too, e.g. `docker.io/library/nginx` or `registry.example.com/shop/*`"));
            }
            if last.contains(':') || s.value.contains('@') {
                return Err(s
                    .error(format!("repository `{}` has a tag or digest", s.value))
                    .with_help("write the repository alone; use `deniedTags` or `requireDigest` for tags and digests"));
            }
            list.push(Pattern::new(&s.value));
        }
        rules.allowed_repositories = Some(list);
    }
    if let Some(d) = &digest {
        rules.require_digest = d.at().boolean()?;
    }
    if let Some(t) = &tags {
        for s in t.at().strings()? {
            if !valid_tag(&s.value) {
                return Err(s.error(format!("invalid tag `{}`", s.value)).with_help(
                    "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
                ));
            }
            rules.denied_tags.push(s.value);
        }
    }
    if let Some(b) = &by_identity {
        for (item, path) in b.at().items()? {
            rules
                .digests_by_identity
                .push(parse_identity_digests(item.with_path(&path))?);
        }
    }
    if let Some(p) = &provenance {
        rules.provenance = Some(crate::provenance::parse_rule(p.at())?);
    }
    Ok(rules)
}

fn check_glob(s: &Str) -> DResult<()> {
    if s.value.is_empty() {
        return Err(s.error("pattern must not be empty"));
    }
    if s.value.contains("***") {
        return Err(s
            .error(format!("pattern `{}` has `***`", s.value))
            .with_help("`*` matches within a path component, `**` across components"));
    }
    if let Some(c) = s
        .value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(s.error(format!("pattern `{}` contains {c:?}", s.value)));
    }
    Ok(())
}

fn parse_identity_digests(at: At<'_>) -> DResult<IdentityDigests> {
    let mut f = at.fields()?;
    let ns_f = f.require("namespace")?;
    let sa_f = f.take("serviceAccount");
    let labels_f = f.take("matchLabels");
    let digests_f = f.require("digests")?;
    f.finish(&["namespace", "serviceAccount", "matchLabels", "digests"])?;
    let namespace = ns_f.at().string()?;
    if namespace.is_empty() {
        return Err(ns_f.at().error("namespace must not be empty"));
    }
    let who = match (&sa_f, &labels_f) {
        (Some(sa), None) => {
            let sa_name = sa.at().string()?;
            if sa_name.is_empty() {
                return Err(sa.at().error("service account must not be empty"));
            }
            IdentityKey::ServiceAccount(sa_name)
        }
        (None, Some(l)) => {
            let labels = l.at().string_map()?;
            if labels.is_empty() {
                return Err(l
                    .at()
                    .error("`matchLabels` must name at least one label")
                    .with_help("an entry for a whole namespace would be written with every workload's labels; list them"));
            }
            IdentityKey::Labels(labels)
        }
        _ => {
            return Err(
                at.error("an identity needs exactly one of `serviceAccount` and `matchLabels`")
            );
        }
    };
    let mut digests = Vec::new();
    for s in digests_f.at().strings()? {
        if !valid_digest(&s.value) {
            return Err(s
                .error(format!("invalid digest `{}`", s.value))
                .with_help("write `sha256:` and 64 lower-case hex digits"));
        }
        digests.push(s.value);
    }
    if digests.is_empty() {
        return Err(digests_f
            .at()
            .error("`digests` is empty: no image could run as this identity")
            .with_help("list the digests your pipeline built"));
    }
    Ok(IdentityDigests {
        namespace,
        who,
        digests,
    })
}

fn parse_privileges(at: At<'_>) -> DResult<Privileges> {
    const KNOWN: &[&str] = &[
        "level",
        "allowedCapabilities",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "allowedHostPaths",
        "runAsNonRoot",
        "noNewPrivileges",
        "seccompRequired",
        "readOnlyRootFilesystem",
        "allowedSysctls",
        "appArmor",
        "selinux",
        "procMount",
        "procMountPaths",
        "allowedDevices",
    ];
    let mut f = at.fields()?;
    let level = match f.take("level") {
        None => Level::Privileged,
        Some(l) => match l.at().string()?.as_str() {
            "privileged" => Level::Privileged,
            "baseline" => Level::Baseline,
            "restricted" => Level::Restricted,
            other => {
                return Err(l
                    .at()
                    .error(format!("unknown level `{other}`"))
                    .with_help("expected `privileged`, `baseline` or `restricted`"));
            }
        },
    };
    let mut p = Privileges::for_level(level);
    if let Some(c) = f.take("allowedCapabilities") {
        let mut caps = Vec::new();
        for s in c.at().strings()? {
            let name = cap_name(&s.value);
            if !KNOWN_CAPS.contains(&name.as_str()) {
                let mut d = s.error(format!("unknown capability `{}`", s.value));
                if name == "ALL" {
                    d = d.with_help("to allow every capability, leave `allowedCapabilities` out at level `privileged`");
                } else {
                    d = d.with_help("write a Linux capability such as `NET_BIND_SERVICE` or `CAP_NET_BIND_SERVICE`");
                }
                return Err(d);
            }
            caps.push(name);
        }
        p.allowed_capabilities = Some(caps);
    }
    if let Some(b) = f.take("hostNetwork") {
        p.host_network = b.at().boolean()?;
    }
    if let Some(b) = f.take("hostPID") {
        p.host_pid = b.at().boolean()?;
    }
    if let Some(b) = f.take("hostIPC") {
        p.host_ipc = b.at().boolean()?;
    }
    if let Some(h) = f.take("allowedHostPaths") {
        let mut list = Vec::new();
        for (item, path) in h.at().items()? {
            let item = item.with_path(&path);
            let mut hf = item.fields()?;
            let prefix_f = hf.require("pathPrefix")?;
            let ro = match hf.take("readOnly") {
                Some(r) => r.at().boolean()?,
                None => false,
            };
            hf.finish(&["pathPrefix", "readOnly"])?;
            let prefix = prefix_f.at().string()?;
            if !prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") {
                return Err(prefix_f
                    .at()
                    .error(format!("`{prefix}` is not an absolute path"))
                    .with_help("write a host path such as `/var/log`"));
            }
            let trimmed = prefix.trim_end_matches('/');
            list.push(HostPath {
                path_prefix: if trimmed.is_empty() {
                    "/".into()
                } else {
                    trimmed.into()
                },
                read_only: ro,
            });
        }
        p.allowed_host_paths = Some(list);
    }
    if let Some(b) = f.take("runAsNonRoot") {
        p.run_as_non_root = b.at().boolean()?;
    }
    if let Some(b) = f.take("noNewPrivileges") {
        p.no_new_privileges = b.at().boolean()?;
    }
    if let Some(b) = f.take("seccompRequired") {
        p.seccomp_required = b.at().boolean()?;
    }
    if let Some(b) = f.take("readOnlyRootFilesystem") {
        p.read_only_root_filesystem = b.at().boolean()?;
    }
    if let Some(s) = f.take("allowedSysctls") {
        let mut list = Vec::new();
        for s in s.at().strings()? {
            let body = s.value.strip_suffix('*').unwrap_or(&s.value);
            let ok = !s.value.is_empty()
                && body
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c));
            if !ok {
                return Err(s
                    .error(format!("invalid sysctl `{}`", s.value))
                    .with_help("write a sysctl name such as `net.ipv4.tcp_syncookies`, or a prefix ending in `*`"));
            }
            list.push(s.value);
        }
        p.allowed_sysctls = Some(list);
    }
    if let Some(a) = f.take("appArmor") {
        p.app_armor = match a.at().string()?.as_str() {
            "any" => AppArmor::Any,
            "notUnconfined" => AppArmor::NotUnconfined,
            "required" => AppArmor::Required,
            other => {
                return Err(a
                    .at()
                    .error(format!("unknown appArmor setting `{other}`"))
                    .with_help("expected `any`, `notUnconfined` or `required`"));
            }
        };
    }
    if let Some(s) = f.take("selinux") {
        let at = s.at();
        let mut sf = at.fields()?;
        let types = sf.take("allowedTypes");
        let users = sf.take("allowedUsers");
        let roles = sf.take("allowedRoles");
        sf.finish(&["allowedTypes", "allowedUsers", "allowedRoles"])?;
        for (field, slot, what, example) in [
            (&types, &mut p.selinux_types, "type", "`container_t`"),
            (&users, &mut p.selinux_users, "user", "`system_u`"),
            (&roles, &mut p.selinux_roles, "role", "`system_r`"),
        ] {
            let Some(field) = field else { continue };
            let mut list = Vec::new();
            for t in field.at().strings()? {
                if t.value.is_empty()
                    || !t
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(t
                        .error(format!("invalid SELinux {what} `{}`", t.value))
                        .with_help(format!("write a {what} such as {example}")));
                }
                list.push(t.value);
            }
            *slot = Some(list);
        }
    }
    if let Some(m) = f.take("procMount") {
        p.proc_mount = match m.at().string()?.as_str() {
            "Default" => ProcMount::Default,
            "Unmasked" => ProcMount::Unmasked,
            other => {
                return Err(m
                    .at()
                    .error(format!("unknown procMount `{other}`"))
                    .with_help("expected `Default` or `Unmasked`"));
            }
        };
    }
    if let Some(m) = f.take("procMountPaths") {
        p.proc_paths = parse_proc_paths(m.at())?;
    }
    if let Some(d) = f.take("allowedDevices") {
        let mut list = Vec::new();
        for s in d.at().strings()? {
            match DevicePattern::parse(&s.value) {
                Some(pat) => list.push(pat),
                None => {
                    return Err(s
                        .error(format!("invalid device `{}`", s.value))
                        .with_help("write `c <major>:<minor>` or `b <major>:<minor>`, `*` for any number, e.g. `c 10:229`"));
                }
            }
        }
        p.allowed_devices = Some(list);
    }
    f.finish(KNOWN)?;
    Ok(p)
}

/// `procMountPaths`: a preset name or `{masked: [...], readOnly: [...]}`.
fn parse_proc_paths(at: At<'_>) -> DResult<ProcPaths> {
    if let Ok(name) = at.string() {
        return ProcPaths::preset(&name).ok_or_else(|| {
            at.error(format!("unknown procMountPaths preset `{name}`"))
                .with_help(format!(
                    "expected one of {}, or `{{masked: [...], readOnly: [...]}}`",
                    ticks(PROC_PRESETS)
                ))
        });
    }
    let mut f = at.fields()?;
    let masked = f.take("masked");
    let readonly = f.take("readOnly");
    f.finish(&["masked", "readOnly"])?;
    let mut paths = ProcPaths {
        name: "custom".into(),
        masked: Vec::new(),
        readonly: Vec::new(),
    };
    for (field, slot) in [
        (&masked, &mut paths.masked),
        (&readonly, &mut paths.readonly),
    ] {
        let Some(field) = field else { continue };
        for s in field.at().strings()? {
            if !s.value.starts_with('/') || s.value.split('/').any(|c| c == "..") {
                return Err(s
                    .error(format!("`{}` is not an absolute path", s.value))
                    .with_help("write a container path such as `/proc/sys`"));
            }
            slot.push(s.value);
        }
    }
    Ok(paths)
}

/// `sha256:<64 lower hex>` or `sha512:<128 lower hex>`.
fn valid_digest(d: &str) -> bool {
    let hex = |h: &str, n: usize| {
        h.len() == n
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    if let Some(h) = d.strip_prefix("sha256:") {
        hex(h, 64)
    } else if let Some(h) = d.strip_prefix("sha512:") {
        hex(h, 128)
    } else {
        false
    }
}

// ----------------------------------------------------------------------------------------
