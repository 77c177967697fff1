//! Containers on a host: `podman inspect` / `docker inspect` (the Docker API's container
//! inspect format, which Podman follows), and `podman ps --format json`.
//!
//! Workload names: a `palisade.dev/workload` label; else Compose's `com.docker.compose.service`;
//! else Swarm's `com.docker.swarm.service.name`; else the container's name. Namespaces: a
//! `palisade.dev/namespace` label; else Compose's project (`com.docker.compose.project`); else
//! Swarm's stack (`com.docker.stack.namespace`); else the caller's default. Replicas
//! (`shop-web-1`, `shop-web-2`) become one workload.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use palisade_engine::inventory::{NamedPort, Phase};
use palisade_engine::request::Transport;
use serde::Deserialize;
use serde_json::Value;

use crate::kubernetes::digest_of;
use crate::{Finding, Image, Member, ObjectRef};

/// Overrides the workload name.
pub const WORKLOAD_LABEL: &str = "palisade.dev/workload";
/// Overrides the namespace.
pub const NAMESPACE_LABEL: &str = "palisade.dev/namespace";
/// Compose's project label.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Compose's service label.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// Swarm's service name label.
pub const SWARM_SERVICE: &str = "com.docker.swarm.service.name";
/// Swarm's stack label (`docker stack deploy`).
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

/// Containers read so far, as inventory members, and what could not be read.
#[derive(Debug, Clone, Default)]
pub struct Containers {
    /// One member per container.
    pub members: Vec<Member>,
    /// Containers or documents that could not be read.
    pub unmapped: Vec<Finding>,
    /// Containers read with something left out.
    pub notes: Vec<Finding>,
    /// The namespace for containers that do not name one.
    pub default_namespace: String,
}

/// A file that is not a JSON array or object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ReadError {
    /// The file (or command).
    pub file: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Inspect {
    id: String,
    name: String,
    image: String,
    /// Podman only: the image's registry digest.
    image_digest: Option<String>,
    /// Podman only: the image as named.
    image_name: Option<String>,
    config: InspectConfig,
    state: InspectState,
    network_settings: NetworkSettings,
    host_config: HostConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectConfig {
    image: String,
    labels: Option<BTreeMap<String, String>>,
    exposed_ports: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectState {
    status: String,
    exit_code: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkSettings {
    #[serde(rename = "IPAddress")]
    ip_address: String,
    #[serde(rename = "GlobalIPv6Address")]
    global_ipv6_address: String,
    ports: Option<BTreeMap<String, Value>>,
    networks: Option<BTreeMap<String, Endpoint>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Endpoint {
    #[serde(rename = "IPAddress")]
    ip_address: String,
    #[serde(rename = "GlobalIPv6Address")]
    global_ipv6_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfig {
    network_mode: String,
}

/// `podman ps --format json`: no addresses (those are in `inspect`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PsEntry {
    id: String,
    names: Vec<String>,
    image: String,
    labels: Option<BTreeMap<String, String>>,
    state: String,
    exit_code: i64,
    ports: Option<Vec<PsPort>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PsPort {
    container_port: u32,
    protocol: String,
    range: u32,
}

impl Containers {
    /// Containers whose labels name no namespace are put in `default_namespace`.
    pub fn new(default_namespace: &str) -> Self {
        Containers {
            default_namespace: default_namespace.to_string(),
            ..Containers::default()
        }
    }

    /// Reads `podman inspect` / `docker inspect` output (an array of containers, or one), or
    /// `podman ps --format json` output (recognised by its `Names` list).
    pub fn read(&mut self, file: &str, text: &str) -> Result<(), ReadError> {
        let v: Value = serde_json::from_str(text).map_err(|e| ReadError {
            file: file.to_string(),
            message: format!("invalid JSON: {e}"),
        })?;
        let items = match v {
            Value::Array(items) => items,
            obj @ Value::Object(_) => vec![obj],
            _ => {
                return Err(ReadError {
                    file: file.to_string(),
                    message: "expected an array of containers".into(),
                });
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            self.add(item, &format!("{file}[{i}]"));
        }
        Ok(())
    }

    fn add(&mut self, item: Value, at: &str) {
        if item.get("Names").is_some_and(Value::is_array) {
            match serde_path_to_error::deserialize::<_, PsEntry>(item) {
                Ok(p) => self.add_ps(p),
                Err(e) => self.unmapped.push(Finding::new(
                    ObjectRef::new("Container", "", at),
                    format!(
                        "does not read as `podman ps` output at `{}`: {}",
                        e.path(),
                        e.inner()
                    ),
                )),
            }
            return;
        }
        match serde_path_to_error::deserialize::<_, Inspect>(item) {
            Ok(c) => self.add_inspect(c, at),
            Err(e) => self.unmapped.push(Finding::new(
                ObjectRef::new("Container", "", at),
                format!(
                    "does not read as container inspect output at `{}`: {}",
                    e.path(),
                    e.inner()
                ),
            )),
        }
    }

    fn add_inspect(&mut self, c: Inspect, at: &str) {
        // Docker writes `/name`.
        let name = c.name.trim_start_matches('/').to_string();
        let labels = c.config.labels.unwrap_or_default();
        let Some((namespace, workload)) = self.naming(&name, &c.id, &labels, at) else {
            return;
        };
        let object = ObjectRef::new("Container", &namespace, &name);
        let mut ips = Vec::new();
        let mut raw = vec![
            c.network_settings.ip_address.clone(),
            c.network_settings.global_ipv6_address.clone(),
        ];
        for e in c.network_settings.networks.iter().flat_map(|n| n.values()) {
            raw.push(e.ip_address.clone());
            raw.push(e.global_ipv6_address.clone());
        }
        for r in raw.iter().filter(|r| !r.is_empty()) {
            match r.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => self.notes.push(Finding::new(
                    object.clone(),
                    format!("address `{r}` is not an IP address: left out"),
                )),
            }
        }
        let mut ports = Vec::new();
        let keys = c
            .config
            .exposed_ports
            .iter()
            .flat_map(|p| p.keys())
            .chain(c.network_settings.ports.iter().flat_map(|p| p.keys()));
        for key in keys {
            match port_key(key) {
                Some(p) if !ports.contains(&p) => ports.push(p),
                Some(_) => {}
                None => self.notes.push(Finding::new(
                    object.clone(),
                    format!("port `{key}` is not `<port>/<tcp|udp|sctp>`: left out"),
                )),
            }
        }
        let host_network = c.host_config.network_mode == "host";
        let image = c
            .image_name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| c.config.image.clone());
        let digest = c
            .image_digest
            .filter(|d| d.contains(':'))
            .or_else(|| digest_of(&image));
        let phase = phase_of(&c.state.status, c.state.exit_code);
        self.members.push(Member {
            object,
            namespace,
            workload,
            labels,
            service_account: "default".into(),
            ips,
            ports,
            phase,
            terminating: c.state.status == "removing",
            host_network,
            node_name: String::new(),
            images: vec![Image {
                container: name,
                image,
                digest,
            }],
        });
    }

    fn add_ps(&mut self, p: PsEntry) {
        let name = p.names.first().cloned().unwrap_or_default();
        let labels = p.labels.unwrap_or_default();
        let Some((namespace, workload)) = self.naming(&name, &p.id, &labels, &p.id) else {
            return;
        };
        let object = ObjectRef::new("Container", &namespace, &name);
        self.notes.push(Finding::new(
            object.clone(),
            "read from `podman ps`, which lists no addresses: use `podman inspect` for them",
        ));
        let mut ports = Vec::new();
        for pp in p.ports.unwrap_or_default() {
            for offset in 0..pp.range.max(1) {
                let key = format!(
                    "{}/{}",
                    pp.container_port.saturating_add(offset),
                    pp.protocol
                );
                if let Some(np) = port_key(&key).filter(|np| !ports.contains(np)) {
                    ports.push(np);
                }
            }
        }
        self.members.push(Member {
            object,
            namespace,
            workload,
            labels,
            service_account: "default".into(),
            ips: Vec::new(),
            ports,
            phase: phase_of(&p.state, p.exit_code),
            terminating: p.state == "removing",
            host_network: false,
            node_name: String::new(),
            images: vec![Image {
                container: name,
                digest: digest_of(&p.image),
                image: p.image,
            }],
        });
    }

    /// The namespace and workload name a container's labels give it.
    fn naming(
        &mut self,
        name: &str,
        id: &str,
        labels: &BTreeMap<String, String>,
        at: &str,
    ) -> Option<(String, String)> {
        let get = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
        let workload = get(WORKLOAD_LABEL)
            .or_else(|| get(COMPOSE_SERVICE))
            .or_else(|| get(SWARM_SERVICE))
            .or_else(|| (!name.is_empty()).then(|| name.to_string()));
        let Some(workload) = workload else {
            self.unmapped.push(Finding::new(
                ObjectRef::new("Container", "", if id.is_empty() { at } else { id }),
                "a container without a name or a workload label",
            ));
            return None;
        };
        let namespace = get(NAMESPACE_LABEL)
            .or_else(|| get(COMPOSE_PROJECT))
            .or_else(|| get(STACK_NAMESPACE))
            .unwrap_or_else(|| self.default_namespace.clone());
        Some((namespace, workload))
    }

    /// Runs `<program> <args> ps -a -q --no-trunc <ps_args>` and `inspect` on every container
    /// it lists, and reads the result: the host's containers now. `args` go before the
    /// subcommand (Podman's `--storage-driver`, ...), `ps_args` after `ps` (`--filter ...`).
    pub fn from_command(
        &mut self,
        program: &str,
        args: &[String],
        ps_args: &[String],
    ) -> Result<(), ReadError> {
        let run = |extra: &[&str]| -> Result<String, ReadError> {
            let out = Command::new(program)
                .args(args)
                .args(extra)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| ReadError {
                    file: program.to_string(),
                    message: format!("cannot run: {e}"),
                })?;
            if !out.status.success() {
                return Err(ReadError {
                    file: format!("{program} {}", extra.join(" ")),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let mut ps: Vec<&str> = vec!["ps", "-a", "-q", "--no-trunc"];
        ps.extend(ps_args.iter().map(String::as_str));
        let ids: Vec<String> = run(&ps)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut extra: Vec<&str> = vec!["inspect", "--type", "container"];
        extra.extend(ids.iter().map(String::as_str));
        let text = run(&extra)?;
        self.read(&format!("{program} inspect"), &text)
    }
}

/// Docker's `State.Status` as a pod phase: `created` has not started (Pending), `running`
/// and `paused` hold their addresses (Running), `restarting` Pending, `exited` Succeeded or
/// Failed by exit code, `dead` Failed, `removing` Running (and terminating).
fn phase_of(status: &str, exit_code: i64) -> Option<Phase> {
    match status.to_ascii_lowercase().as_str() {
        "created" | "configured" | "initialized" | "restarting" => Some(Phase::Pending),
        "running" | "paused" | "removing" | "stopping" => Some(Phase::Running),
        "exited" | "stopped" if exit_code == 0 => Some(Phase::Succeeded),
        "exited" | "stopped" | "dead" => Some(Phase::Failed),
        _ => None,
    }
}

/// `8080/tcp` as a port.
fn port_key(key: &str) -> Option<NamedPort> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        "sctp" => Transport::Sctp,
        _ => return None,
    };
    Some(NamedPort {
        name: String::new(),
        port,
        protocol,
    })
}
