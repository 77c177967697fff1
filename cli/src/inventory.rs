//! `palisade inventory`: the `Inventory` document from what the orchestrator and the
//! container runtime report (`palisade-sources`), on standard output or in a file. Every
//! object that was not mapped, every note and every address warning goes to standard error.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use palisade_sources::containers::Containers;
use palisade_sources::kubernetes::Objects;
use palisade_sources::{Import, document};

/// `palisade inventory`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Kubernetes objects: `kubectl get namespaces,pods,serviceaccounts,services,deployments,
    /// replicasets,statefulsets,daemonsets,jobs,cronjobs -A -o json` (or `-o yaml`, or
    /// several files); `-` reads standard input.
    #[arg(value_name = "KUBERNETES_OBJECTS")]
    pub kubernetes: Vec<PathBuf>,
    /// `podman inspect` / `docker inspect` (or `podman ps --format json`) output (repeatable).
    #[arg(long, value_name = "FILE")]
    pub containers: Vec<PathBuf>,
    /// Ask the host's Podman for its containers (`podman ps -a -q`, `podman inspect`).
    #[arg(long)]
    pub podman: bool,
    /// The namespace of containers whose labels name none.
    #[arg(long, value_name = "NAMESPACE", default_value = "default")]
    pub container_namespace: String,
    /// The document's `metadata.name`.
    #[arg(long, value_name = "NAME", default_value = "inventory")]
    pub name: String,
    /// The document's format.
    #[arg(long, value_enum, default_value_t = DocumentFormat::Yaml)]
    pub format: DocumentFormat,
    /// Where to write the document [default: standard output].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// YAML (with images and findings as comments) or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocumentFormat {
    /// YAML, as `docs/inventory.md` shows it.
    Yaml,
    /// JSON (the same document).
    Json,
}

/// Runs `palisade inventory`: exit 0 when the document was written (findings or not).
pub fn inventory(args: &InventoryArgs) -> Result<u8, String> {
    if args.kubernetes.is_empty() && args.containers.is_empty() && !args.podman {
        return Err(
            "nothing to read: name Kubernetes object files, `--containers FILE` or `--podman`"
                .into(),
        );
    }
    let mut objects = Objects::default();
    for path in &args.kubernetes {
        let (name, text) = read(path)?;
        objects.read(&name, &text).map_err(|e| e.to_string())?;
    }
    let mut containers = Containers::new(&args.container_namespace);
    for path in &args.containers {
        let (name, text) = read(path)?;
        containers.read(&name, &text).map_err(|e| e.to_string())?;
    }
    if args.podman {
        containers
            .from_command("podman", &[], &[])
            .map_err(|e| e.to_string())?;
    }
    let import = objects.import_with(containers);
    let text = match args.format {
        DocumentFormat::Yaml => document::to_yaml(&import, &args.name),
        DocumentFormat::Json => {
            let doc = document::to_json(&import.inventory, &args.name);
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n"
        }
    };
    match &args.out {
        Some(p) => std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?,
        None => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    report(&import);
    Ok(0)
}

fn read(path: &PathBuf) -> Result<(String, String), String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("standard input: {e}"))?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// The summary and every finding, on standard error.
fn report(import: &Import) {
    let mut err = std::io::stderr().lock();
    let counts: Vec<String> = import
        .counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let inv = &import.inventory;
    let _ = writeln!(
        err,
        "read: {}\ninventory: {} workloads, {} namespaces, {} nodes",
        if counts.is_empty() {
            "nothing".to_string()
        } else {
            counts.join(", ")
        },
        inv.workloads.len(),
        inv.namespaces.len(),
        inv.nodes.len()
    );
    for f in &import.unmapped {
        let _ = writeln!(err, "not mapped: {f}");
    }
    for f in &import.notes {
        let _ = writeln!(err, "note: {f}");
    }
    for w in inv.warnings() {
        let _ = writeln!(err, "warning: {}", w.message);
    }
}
